"""Tokenizer evaluation: PSNR, SSIM, bits per pixel, codebook usage and perplexity, against H.264.

Every figure is measured on uint8 frames, the way a user sees them: the tokenizer's output is
rounded to uint8 like H.264's. Per clip, PSNR is computed from the MSE over all its frames; SSIM
(Wang et al. 2004: 11x11 Gaussian window, σ = 1.5) is averaged over frames and channels; the tables
average over clips.

Bits: the tokenizer spends tokens x log2(codebook size) bits on a clip. H.264 (libx264 through
PyAV, preset veryslow, tune psnr, grayscale coded as 4:0:0) gets, for each clip, the highest CRF
(fewest bits) whose encoded size is at least the tokenizer's bits, so it never has fewer bits. Its
size is the encoded packet bytes only (no container), less the SEI messages x264 adds (its version
and settings string, about 600 bytes that no decoder needs); the stream actually decoded is that
stripped one, so the count is honest.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from arvid.tokenizer import Tokenizer, tensor_to_video, video_to_tensor
from arvid.utils.atomic import atomic_path


# ---------------------------------------------------------------- metrics on uint8 video


def codebook_stats(codes: torch.Tensor | np.ndarray, codebook_size: int) -> tuple[float, float]:
    """(usage: fraction of codes that occur, perplexity: exp of the entropy of the code histogram)."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum()))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of one shape (a clip: MSE over all its pixels)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 clips (T, H, W, C): per frame and channel, valid windows only."""
    x = torch.from_numpy(a.astype(np.float64)).permute(0, 3, 1, 2).reshape(-1, 1, *a.shape[1:3])
    y = torch.from_numpy(b.astype(np.float64)).permute(0, 3, 1, 2).reshape(-1, 1, *b.shape[1:3])
    win = _gaussian_window(min(11, a.shape[1], a.shape[2]))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mx**2
    syy = F.conv2d(y * y, win) - my**2
    sxy = F.conv2d(x * y, win) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


# ---------------------------------------------------------------- H.264


def _strip_sei(packet: bytes) -> bytes:
    """Drop SEI NAL units (type 6) from an Annex B packet; they carry no picture data."""
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", packet)]
    keep = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(packet)
        if end - s > 3 and packet[s + 3] & 0x1F != 6:
            keep.append(packet[s:end])
    return b"".join(keep)


def h264_roundtrip(video: np.ndarray, crf: int, fps: float = 8.0, preset: str = "veryslow") -> tuple[int, np.ndarray]:
    """Encode uint8 frames (T, H, W, C) with libx264 at `crf`; return (bytes, decoded uint8 (T, H, W, C))."""
    import av

    frames, h, w, c = video.shape
    gray = c == 1
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height = w, h
    enc.pix_fmt = "gray" if gray else "yuv420p"
    enc.time_base = Fraction(1, 1000)
    enc.framerate = Fraction(fps).limit_denominator(1000)
    enc.options = {"crf": str(crf), "preset": preset, "tune": "psnr"}
    packets = []
    for i, frame in enumerate(video):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[..., 0] if gray else frame),
                                        format="gray" if gray else "rgb24")
        if not gray:
            vf = vf.reformat(format="yuv420p")
        vf.pts = round(i * 1000 / fps)
        packets += [bytes(p) for p in enc.encode(vf)]
    packets += [bytes(p) for p in enc.encode(None)]
    packets = [_strip_sei(p) for p in packets]
    dec = av.CodecContext.create("h264", "r")
    out = []
    for p in packets:
        out += dec.decode(av.Packet(p))
    out += dec.decode(None)
    decoded = np.stack([_luma(f, h, w) if gray else f.to_ndarray(format="rgb24") for f in out])
    return sum(len(p) for p in packets), decoded.reshape(frames, h, w, c)


def _luma(frame, h: int, w: int) -> np.ndarray:
    """The decoded Y plane as it is: FFmpeg decodes 4:0:0 as yuv420p, and converting that to gray
    would stretch the (untagged, so "limited") range 16-235 to 0-255, distorting every pixel."""
    return frame.to_ndarray()[:h, :w]


def h264_at_bits(video: np.ndarray, min_bits: float, fps: float = 8.0, preset: str = "veryslow"):
    """The highest CRF whose stream has at least `min_bits` bits: (crf, bytes, decoded). CRF 51 if all exceed."""
    lo, hi = 0, 51  # bytes fall as CRF rises; find the largest CRF with 8·bytes >= min_bits
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        nbytes, decoded = h264_roundtrip(video, mid, fps, preset)
        if nbytes * 8 >= min_bits:
            best, lo = (mid, nbytes, decoded), mid + 1
        else:
            hi = mid - 1
    if best is None:  # even CRF 0 has too few bits (never seen in practice): take CRF 0
        nbytes, decoded = h264_roundtrip(video, 0, fps, preset)
        best = (0, nbytes, decoded)
    return best


# ---------------------------------------------------------------- the evaluation


@dataclass
class Row:
    name: str
    psnr: float
    ssim: float
    bpp: float
    usage: float | None = None
    perplexity: float | None = None


@dataclass
class Report:
    clips: int
    frames: int
    height: int
    width: int
    tokenizer: Row
    h264: Row | None
    h264_crf: float | None = None
    wins: int | None = None  # clips where the tokenizer's PSNR beats H.264's
    h264_floor: int | None = None  # clips where H.264 is at CRF 51, its lowest rate, and still spends more bits
    frame_psnr: list[float] | None = None  # per frame index: PSNR of the clips' mean MSE at that frame
    h264_frame_psnr: list[float] | None = None
    source: str = "held-out clips"  # what the clips are: "held-out clips", or "... not held out"

    def table(self) -> str:
        head = f"{'':18}{'PSNR dB':>9}{'SSIM':>8}{'bpp':>9}{'usage':>8}{'perplexity':>12}"
        lines = [head]
        for row in (self.tokenizer, self.h264):
            if row is None:
                continue
            usage = f"{row.usage:8.1%}" if row.usage is not None else f"{'-':>8}"
            perp = f"{row.perplexity:12.1f}" if row.perplexity is not None else f"{'-':>12}"
            lines.append(f"{row.name:18}{row.psnr:9.2f}{row.ssim:8.4f}{row.bpp:9.4f}{usage}{perp}")
        lines.append(f"{self.clips} {self.source} of {self.frames} frames, {self.height}x{self.width}")
        if self.frame_psnr and self.frames > 1:
            line = f"per frame: first {self.frame_psnr[0]:.2f} dB, the rest {_db_mean(self.frame_psnr[1:]):.2f} dB"
            if self.h264_frame_psnr:
                line += (f" (H.264: {self.h264_frame_psnr[0]:.2f} and {_db_mean(self.h264_frame_psnr[1:]):.2f}; "
                         f"its first frame is the I-frame)")
            lines.append(line)
        if self.h264 is not None:
            lines.append(f"H.264: libx264 veryslow/tune psnr, per clip the highest CRF with at least the tokenizer's "
                         f"bits (mean CRF {self.h264_crf:.1f}; {self.h264_floor}/{self.clips} clips at CRF 51, its lowest rate); "
                         f"tokenizer PSNR higher on {self.wins}/{self.clips} clips")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_tokenizer(tok: Tokenizer, dataset, clips: int = 100, batch_size: int = 8, h264: bool = True,
                       preset: str = "veryslow", progress: bool = False, refine: int = 0) -> Report:
    """Reconstruct `clips` clips of `dataset` (indices 0..clips-1) and compare with H.264 at >= bits.
    `refine`: encoder-side search steps per latent frame (`Tokenizer.encode`)."""
    from tqdm import tqdm

    tok.eval()
    fps = float(getattr(dataset, "fps", 8.0))
    bits_per_token = math.log2(tok.codebook_size)
    all_codes, tok_psnr, tok_ssim, h_psnr, h_ssim, h_bits, h_crf, tok_bits = [], [], [], [], [], [], [], []
    tok_frame_mse, h_frame_mse = [], []  # per clip: (T,) MSE of each frame
    wins, shape = 0, None
    bar = tqdm(total=clips, desc="eval", disable=not progress, unit="clip")
    for first in range(0, clips, batch_size):
        videos, _ = dataset.batch(range(first, min(clips, first + batch_size)))  # uint8 (B, T, H, W, C)
        shape = videos.shape[1:4]
        codes = tok.encode(video_to_tensor(videos).to(tok.device), refine=refine)  # (B, t, h, w)
        recon = tensor_to_video(tok.decode(codes))  # uint8 (B, T, H, W, C)
        all_codes.append(codes.cpu().numpy())
        for video, rec, code in zip(videos, recon, codes):
            bits = code.numel() * bits_per_token
            tok_bits.append(bits)
            tok_psnr.append(psnr(video, rec))
            tok_ssim.append(ssim(video, rec))
            tok_frame_mse.append(_frame_mse(video, rec))
            if h264:
                crf, nbytes, dec = h264_at_bits(video, bits, fps, preset)
                h_crf.append(crf)
                h_bits.append(8 * nbytes)
                h_psnr.append(psnr(video, dec))
                h_frame_mse.append(_frame_mse(video, dec))
                h_ssim.append(ssim(video, dec))
                wins += tok_psnr[-1] > h_psnr[-1]
            bar.update(1)
    bar.close()
    pixels = int(np.prod(shape))  # frames x height x width per clip
    usage, perplexity = codebook_stats(np.concatenate(all_codes), tok.codebook_size)
    row = Row("arvid tokenizer", _mean(tok_psnr), float(np.mean(tok_ssim)), float(np.mean(tok_bits)) / pixels,
              usage, perplexity)
    h_row = Row("H.264 (libx264)", _mean(h_psnr), float(np.mean(h_ssim)), float(np.mean(h_bits)) / pixels) if h264 else None
    return Report(clips, *shape, row, h_row, float(np.mean(h_crf)) if h264 else None, wins if h264 else None,
                  sum(c == 51 for c in h_crf) if h264 else None,
                  _frame_db(tok_frame_mse), _frame_db(h_frame_mse) if h264 else None,
                  getattr(dataset, "source", "held-out clips"))


def _frame_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T,) MSE of each frame of two uint8 clips (T, H, W, C)."""
    return np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))


def _frame_db(per_clip: list[np.ndarray]) -> list[float]:
    """PSNR at each frame index, from the clips' mean MSE there (a frame index where every clip is exact: inf)."""
    mse = np.mean(per_clip, axis=0)
    return [float("inf") if m == 0 else 10 * math.log10(255.0**2 / m) for m in mse]


def _db_mean(db: list[float]) -> float:
    """PSNR of the mean MSE behind a list of PSNRs (the frames' pooled error, not a mean of dB)."""
    mse = [255.0**2 / 10 ** (d / 10) for d in db]
    return float("inf") if max(mse) == 0 else 10 * math.log10(255.0**2 / float(np.mean(mse)))


def h264_curve(dataset, clips: int, crfs: tuple[int, ...], preset: str = "veryslow",
               progress: bool = False) -> list[dict]:
    """H.264's rate-distortion curve on clips 0..clips-1 of `dataset`: per CRF, the mean bpp, PSNR and SSIM."""
    from tqdm import tqdm

    fps = float(getattr(dataset, "fps", 8.0))
    rows = {c: {"crf": c, "bits": [], "psnr": [], "ssim": []} for c in crfs}
    pixels = None
    for i in tqdm(range(clips), desc="H.264 curve", disable=not progress, unit="clip"):
        videos, _ = dataset.batch(range(i, i + 1))
        video = videos[0]  # uint8 (T, H, W, C)
        pixels = int(np.prod(video.shape[:3]))
        for c in crfs:
            nbytes, dec = h264_roundtrip(video, c, fps, preset)
            r = rows[c]
            r["bits"].append(8 * nbytes)
            r["psnr"].append(psnr(video, dec))
            r["ssim"].append(ssim(video, dec))
    return [{"crf": r["crf"], "bpp": float(np.mean(r["bits"])) / pixels, "psnr": _mean(r["psnr"]),
             "ssim": float(np.mean(r["ssim"]))} for r in rows.values()]


def rd_plot(path, curve: list[dict], report: "Report", label: str) -> None:
    """PSNR and SSIM against bits per pixel: H.264's curve and the tokenizer's point, as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_frame = bool(report.frame_psnr)
    fig, axes = plt.subplots(1, 3 if per_frame else 2, figsize=(15 if per_frame else 10, 3.8))
    for ax, key, name in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.plot([r["bpp"] for r in curve], [r[key] for r in curve], marker="o", color="gray", label="H.264 (libx264)")
        for r in curve:
            ax.annotate(f"crf {r['crf']}", (r["bpp"], r[key]), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.plot([report.tokenizer.bpp], [getattr(report.tokenizer, key)], marker="*", ms=14, ls="", color="C3",
                label=label)
        ax.set(xlabel="bits per pixel", ylabel=name, title=f"{name} against rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if per_frame:  # where the bits go: the first frame against the frames after it
        ax = axes[2]
        ax.plot(report.frame_psnr, marker="*", color="C3", label=label)
        if report.h264_frame_psnr:
            ax.plot(report.h264_frame_psnr, marker="o", color="gray",
                    label=f"H.264 at at least the same bits (mean CRF {report.h264_crf:.1f})")
        ax.set(xlabel="frame", ylabel="PSNR (dB)", title="PSNR per frame")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report.clips} {report.source} of {report.frames} frames, {report.height}x{report.width}", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("inf")
