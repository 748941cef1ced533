"""Optical flow between consecutive frames (OpenCV's Farneback), for measuring and for training consistency.

`backward_flow(cur, prev)` gives, for every pixel p of `cur`, the offset f such that cur(p) ~ prev(p + f).
Warping `prev` along it (`warp_back`) lays the previous frame onto the current one; where the flow is
right, what is left of |warp_back(prev) - cur| is what changed between the frames that motion does not
explain: the warping error of `arvid eval generation`, and the consistency loss of `arvid train tokenizer
--consistency-weight`. OpenCV comes with arvid's `eval` extra.
"""

from __future__ import annotations

import numpy as np

from arvid.errors import ArvidError

# pyramid scale, levels, window, iterations, poly_n, poly_sigma, flags
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def require_opencv():
    try:
        import cv2
    except ImportError:
        raise ArvidError("optical flow needs OpenCV: pip install 'arvid[eval]' (opencv-python-headless)") from None
    return cv2


def backward_flow(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """uint8 (H, W) frames -> float32 (H, W, 2) flow (dx, dy) in pixels with cur(y, x) ~ prev(y + dy, x + dx)."""
    return require_opencv().calcOpticalFlowFarneback(cur, prev, None, *FARNEBACK)


def warp_back(prev: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """prev (H, W) warped along `backward_flow(cur, prev)` onto cur: bilinear, black outside the frame."""
    cv2 = require_opencv()
    h, w = prev.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(prev, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def backward_flows(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W) -> float32 (T-1, H, W, 2): `backward_flow` from each frame t >= 1 back to frame t-1."""
    flows = [backward_flow(frames[t], frames[t - 1]) for t in range(1, frames.shape[0])]
    return np.stack(flows) if flows else np.zeros((0, *frames.shape[1:3], 2), np.float32)


def clip_flows(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W) -> float32 (T-1, 2, H, W): `backward_flows` as (dy, dx) channels (the layout
    `arvid.tokenizer.warp.warp` takes)."""
    return np.ascontiguousarray(backward_flows(frames)[..., ::-1].transpose(0, 3, 1, 2))
