"""Bringing clips to a model's resolution: always an explicit call, never done silently by a reader.

    resize_video(frames, (H, W))       resize every frame to H x W (aspect ratio not kept)
    center_crop(frames, (H, W))        cut the central H x W window (no resizing)
    fit_video(frames, (H, W), mode)    resize and crop or pad:
        "crop"    (default) scale so the frame covers H x W (the short side matches), then cut the
                  centre: keeps the aspect ratio, loses the edges of the long side
        "pad"     scale so the frame fits inside H x W (the long side matches), then pad with black
                  around it: keeps the aspect ratio and everything in view
        "stretch" resize to exactly H x W, distorting the aspect ratio

All take and return uint8 (T, H, W, C) arrays with C in {1, 3} and return a new array. Resizing
uses Pillow per frame with an antialiased filter (bilinear by default), so downscaling does not
alias; "area" (box) and "lanczos" are sharper choices, "nearest" keeps exact pixel values.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from arvid.errors import ArvidError

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}
FIT_MODES = ("crop", "pad", "stretch")


def resize_video(frames: np.ndarray, size: tuple[int, int], *, filter: str = "bilinear") -> np.ndarray:
    """Resize every frame of (T, H0, W0, C) to (T, H, W, C), `size` = (H, W)."""
    frames, (height, width) = _check_frames(frames), _check_size(size)
    if filter not in _FILTERS:
        raise ArvidError(f"unknown resize filter {filter!r}; choose one of {', '.join(_FILTERS)}")
    if frames.shape[1:3] == (height, width):
        return frames.copy()
    out = np.empty((frames.shape[0], height, width, frames.shape[3]), np.uint8)  # (T, H, W, C)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame[..., 0] if frame.shape[2] == 1 else frame)
        resized = np.asarray(image.resize((width, height), _FILTERS[filter]))
        out[t] = resized.reshape(height, width, frames.shape[3])
    return out


def center_crop(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The central (H, W) window of every frame; refuses a window larger than the frames."""
    frames, (height, width) = _check_frames(frames), _check_size(size)
    h0, w0 = frames.shape[1:3]
    if height > h0 or width > w0:
        raise ArvidError(f"cannot crop {w0}x{h0} frames to {width}x{height} (larger); "
                         "use fit_video(frames, size, mode='crop') to resize first, or mode='pad'")
    top, left = (h0 - height) // 2, (w0 - width) // 2
    return frames[:, top:top + height, left:left + width].copy()


def fit_video(frames: np.ndarray, size: tuple[int, int], mode: str = "crop", *,
              filter: str = "bilinear") -> np.ndarray:
    """Bring (T, H0, W0, C) frames to (T, H, W, C) by `mode`: "crop", "pad" or "stretch" (see module doc)."""
    frames, (height, width) = _check_frames(frames), _check_size(size)
    h0, w0 = frames.shape[1:3]
    if mode == "stretch":
        return resize_video(frames, (height, width), filter=filter)
    if mode == "crop":
        scale = max(height / h0, width / w0)
        scaled = (max(height, round(h0 * scale)), max(width, round(w0 * scale)))
        return center_crop(resize_video(frames, scaled, filter=filter), (height, width))
    if mode == "pad":
        scale = min(height / h0, width / w0)
        scaled = (min(height, max(1, round(h0 * scale))), min(width, max(1, round(w0 * scale))))
        inner = resize_video(frames, scaled, filter=filter)
        out = np.zeros((frames.shape[0], height, width, frames.shape[3]), np.uint8)  # (T, H, W, C) black
        top, left = (height - scaled[0]) // 2, (width - scaled[1]) // 2
        out[:, top:top + scaled[0], left:left + scaled[1]] = inner
        return out
    raise ArvidError(f"unknown fit mode {mode!r}; choose one of {', '.join(FIT_MODES)}")


def _check_frames(frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[3] not in (1, 3):
        got = (f"{frames.dtype} array of shape {frames.shape}" if isinstance(frames, np.ndarray)
               else type(frames).__name__)
        raise ArvidError(f"expected uint8 frames (T, H, W, C) with C 1 or 3, got {got}")
    if min(frames.shape[:3]) == 0:
        raise ArvidError(f"cannot resize or crop empty frames of shape {frames.shape}")
    return frames


def _check_size(size) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ArvidError(f"size must be (height, width), got {size!r}") from None
    if height < 1 or width < 1 or (height, width) != tuple(size):
        raise ArvidError(f"size must be two positive integers (height, width), got {size!r}")
    return height, width
