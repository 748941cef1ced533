"""What a run shows while it trains: `preview.png` in the run folder, rewritten at every evaluation, one row per
clip (the real held-out clip, then the model's reconstruction of it or continuation of its start), and the
curves of `log.csv` as a picture (`arvid train plot`).

Every picture arvid writes here carries a PNG text entry (`arvid: training preview` or `arvid: training
curves`), so a later run replaces only its own pictures and refuses to write over a user's file of that name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from arvid.errors import ArvidError
from arvid.utils.atomic import atomic_path

PREVIEW_FILE = "preview.png"
CURVES_FILE = "curves.png"
_TAG = "arvid"


def is_arvid_picture(path: Path, what: str) -> bool:
    """Whether `path` is a PNG that arvid wrote as `what` ("training preview" or "training curves")."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and getattr(image, "text", {}).get(_TAG) == what
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def check_own(path: Path, what: str, flag: str = "--out") -> None:
    """ArvidError when `path` exists but is not a picture arvid wrote as `what`: it is never written over."""
    if os.path.lexists(path) and not is_arvid_picture(path, what):
        raise ArvidError(f"{path} exists and arvid did not write it: this run would write its {what} there; move "
                         f"that file, or give another {flag}")


def save_picture(image, path: Path, what: str) -> None:
    """Write a PIL image as PNG at `path` atomically, marked as arvid's `what`."""
    from PIL.PngImagePlugin import PngInfo

    check_own(path, what)
    info = PngInfo()
    info.add_text(_TAG, what)
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=info)
    except OSError as e:
        raise ArvidError(f"cannot write {path}: {e}") from e


def write_preview(path: Path, clips: list[tuple[str, np.ndarray]], title: str) -> None:
    """A sheet with one row per (title, uint8 (T, H, W, C) clip), the first row's title prefixed by `title`."""
    from arvid.video.sheet import clips_sheet

    titles = [f"{title}: {t}" if i == 0 else t for i, (t, _) in enumerate(clips)]
    save_picture(clips_sheet([c for _, c in clips], titles=titles, max_frames=12), path, "training preview")


# ------------------------------------------------------------------------------------------------ curves

_PANEL_W, _PANEL_H, _PAD = 360, 180, 36
_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def curve_columns(names: list[str]) -> list[str]:
    """The columns worth a curve: the loss, the figures and the learning rate, not the clock or the speeds."""
    return [n for n in names if n not in ("step", "elapsed_s", "left_s") and not n.endswith("/s")]


def draw_curves(names: list[str], rows: list[dict], title: str):
    """A PIL image: one panel per curve column against the step, its range written on its axis."""
    from PIL import Image, ImageDraw

    from arvid.video.sheet import _font

    shown = [n for n in curve_columns(names) if any(r.get(n) is not None for r in rows)]
    if not shown:
        raise ArvidError("the log has no figures to draw yet")
    cols = min(2, len(shown))
    nrows = math.ceil(len(shown) / cols)
    image = Image.new("RGB", (cols * (_PANEL_W + _PAD) + _PAD, nrows * (_PANEL_H + 2 * _PAD) + _PAD), "white")
    draw, font = ImageDraw.Draw(image), _font(12)
    draw.text((_PAD, 6), title, fill="black", font=font)
    steps = [r["step"] for r in rows]
    lo_s, hi_s = min(steps), max(steps)
    for k, name in enumerate(shown):
        x0 = _PAD + (k % cols) * (_PANEL_W + _PAD)
        y0 = 2 * _PAD + (k // cols) * (_PANEL_H + 2 * _PAD)
        points = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
        values = [v for _, v in points]
        lo, hi = min(values), max(values)
        span, sspan = (hi - lo) or 1.0, (hi_s - lo_s) or 1.0
        draw.rectangle((x0, y0, x0 + _PANEL_W, y0 + _PANEL_H), outline=(160, 160, 160))
        draw.text((x0, y0 - 16), f"{name}: last {values[-1]:.4g}", fill="black", font=font)
        draw.text((x0 + 2, y0 + 2), f"{hi:.4g}", fill=(90, 90, 90), font=font)
        draw.text((x0 + 2, y0 + _PANEL_H - 16), f"{lo:.4g}", fill=(90, 90, 90), font=font)
        draw.text((x0, y0 + _PANEL_H + 2), f"step {lo_s:.0f}", fill=(90, 90, 90), font=font)
        draw.text((x0 + _PANEL_W - 70, y0 + _PANEL_H + 2), f"{hi_s:.0f}", fill=(90, 90, 90), font=font)
        xy = [(x0 + (s - lo_s) / sspan * _PANEL_W, y0 + _PANEL_H - (v - lo) / span * _PANEL_H) for s, v in points]
        color = _COLORS[k % len(_COLORS)]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        for x, y in xy[-1:]:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
    return image


def curves_table(names: list[str], rows: list[dict], lines: int = 12) -> str:
    """The log as a text table: about `lines` rows spread over the run (the last always), the curve columns."""
    shown = ["step", *(n for n in curve_columns(names) if any(r.get(n) is not None for r in rows))]
    n = min(lines, len(rows))
    picked = sorted({round(i * (len(rows) - 1) / max(n - 1, 1)) for i in range(n)})
    cells = [shown] + [[_fmt(rows[i].get(n)) for n in shown] for i in picked]
    widths = [max(len(c[j]) for c in cells) for j in range(len(shown))]
    return "\n".join("  ".join(c[j].rjust(widths[j]) for j in range(len(shown))) for c in cells)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4g}"


__all__ = ["CURVES_FILE", "PREVIEW_FILE", "check_own", "curves_table", "draw_curves", "is_arvid_picture",
           "save_picture", "write_preview"]
