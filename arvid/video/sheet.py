"""Contact sheets: a clip as a PNG grid of its frames, each labelled with its frame number.

People look at video by looking at frames. `contact_sheet(frames, "sheet.png", every=4)` shows
frames 0, 4, 8, ... left to right, top to bottom. Small frames are enlarged by an integer factor
(nearest neighbour, so pixels stay sharp) until a tile is at least 128 pixels wide; `scale` sets the
factor. When more than `max_frames` frames would be shown, the step grows (to a multiple of
`every`) so that the sheet still spans the whole clip; the labels always give true frame numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from arvid.errors import ArvidError
from arvid.video.io import Video, _writing
from arvid.video.transforms import _check_frames

GAP = 2  # pixels between tiles and around the sheet
BACKGROUND = (32, 32, 32)
_MIN_TILE_WIDTH = 128
_DEFAULT_COLS = 8


def sheet_indices(num_frames: int, every: int = 1, max_frames: int = 64) -> list[int]:
    """The frame numbers a sheet shows: every `every`-th frame, the step grown to fit `max_frames`."""
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ArvidError(f"every must be a positive integer, got {every!r}")
    if not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ArvidError(f"max_frames must be a positive integer, got {max_frames!r}")
    step = every * math.ceil(math.ceil(num_frames / every) / max_frames)
    return list(range(0, num_frames, step))


def contact_sheet(frames: np.ndarray | Video, path: str | os.PathLike | None = None, *, every: int = 1,
                  cols: int | None = None, max_frames: int = 64, scale: float | None = None,
                  labels: bool = True, title: str | None = None, numbers: list[int] | None = None) -> Image.Image:
    """Lay out every `every`-th frame of uint8 (T, H, W, C) in a grid; write it as PNG if `path`.

    The sheet is `cols` tiles wide (default: up to 8) and as many rows as needed; each tile is a
    frame scaled by `scale` (default: enlarged to at least 128 pixels wide), with GAP pixels
    between tiles and around the edge, and a title strip on top when `title` is given. `numbers`: the
    frames are these frames of a longer clip (kept from a stream, `sheet_indices`): all are shown,
    labelled with their numbers.
    """
    frames = _check_frames(frames.frames if isinstance(frames, Video) else frames)
    indices = sheet_indices(frames.shape[0], every, max_frames) if numbers is None else range(len(frames))
    cols = _check_cols(cols, len(indices))
    rows = math.ceil(len(indices) / cols)
    tile_h, tile_w = _tile_size(frames.shape[1], frames.shape[2], scale)
    font = _font(max(10, min(tile_h, tile_w) // 7))
    title_h = _text_size(font, title)[1] + 2 * GAP + 4 if title else 0
    sheet = Image.new("RGB", (cols * tile_w + (cols + 1) * GAP, title_h + rows * tile_h + (rows + 1) * GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP + 2, GAP + 2), title, fill=(255, 255, 255), font=font)
    for k, i in enumerate(indices):
        x = GAP + (k % cols) * (tile_w + GAP)
        y = title_h + GAP + (k // cols) * (tile_h + GAP)
        sheet.paste(_tile(frames[i], tile_h, tile_w), (x, y))
        if labels:
            _label(draw, font, str(i if numbers is None else numbers[i]), x, y)
    if path is not None:
        _save(sheet, Path(path).expanduser())
    return sheet


def clips_sheet(clips, path: str | os.PathLike | None = None, *, titles=None, every: int | None = None,
                max_frames: int = 16, numbers: list[int] | None = None) -> Image.Image:
    """One row per clip (uint8 (T, H, W, C) each), every `every`-th frame, titled; PNG if `path`.

    `every` defaults to showing about `max_frames` frames of the longest clip. `numbers`: the clips hold only
    these frames of longer clips (`clip_sheet_frames`), all shown, labelled with their numbers.
    """
    clips = list(clips)
    if not clips:
        raise ArvidError("a contact sheet needs at least one clip")
    longest = max(len(c) for c in clips)
    every = every or max(1, math.ceil(longest / max_frames))
    cols = len(sheet_indices(longest, every, max_frames)) if numbers is None else len(numbers)
    titles = list(titles) if titles is not None else [None] * len(clips)
    rows = [contact_sheet(c, every=every, cols=cols, max_frames=max_frames, title=t, numbers=numbers)
            for c, t in zip(clips, titles)]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), BACKGROUND)
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    if path is not None:
        _save(sheet, Path(path).expanduser())
    return sheet


def clip_sheet_frames(num_frames: int, max_frames: int = 16) -> list[int]:
    """The frames `clips_sheet` shows of clips of `num_frames` frames: what to keep of a stream for its sheet."""
    return sheet_indices(num_frames, max(1, math.ceil(num_frames / max_frames)), max_frames)


def _check_cols(cols, n: int) -> int:
    if cols is None:
        return min(n, _DEFAULT_COLS)
    if not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ArvidError(f"cols must be a positive integer, got {cols!r}")
    return int(cols)


def _tile_size(height: int, width: int, scale: float | None) -> tuple[int, int]:
    if scale is None:
        scale = max(1, math.ceil(_MIN_TILE_WIDTH / width))
    if not isinstance(scale, (int, float)) or not 0 < scale <= 1024:
        raise ArvidError(f"scale must be a number in (0, 1024], got {scale!r}")
    return max(1, round(height * scale)), max(1, round(width * scale))


def _tile(frame: np.ndarray, tile_h: int, tile_w: int) -> Image.Image:
    image = Image.fromarray(frame[..., 0] if frame.shape[2] == 1 else frame).convert("RGB")
    if image.size == (tile_w, tile_h):
        return image
    enlarging = tile_w >= frame.shape[1]
    return image.resize((tile_w, tile_h), Image.Resampling.NEAREST if enlarging else Image.Resampling.BOX)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(font, text: str | None) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text or "0", font=font)
    return right - left, bottom - top


def _label(draw: ImageDraw.ImageDraw, font, text: str, x: int, y: int) -> None:
    """White frame number on a black box in the tile's top-left corner."""
    left, top, right, bottom = draw.textbbox((x + 2, y + 1), text, font=font)
    draw.rectangle((x, y, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=font)


def _save(sheet: Image.Image, path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ArvidError(f"{path}: a contact sheet is written as PNG; give a path ending in .png")
    with _writing(path) as tmp:
        sheet.save(tmp, format="PNG")
