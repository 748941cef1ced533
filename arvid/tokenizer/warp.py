"""Motion-compensated rendering: each decoded frame reuses the one before it, moved by a flow.

A fixed-rate tokenizer spends the same bits on every latent frame, while most of a frame is the
previous frame moved a little (what H.264's P-frames exploit). With `warp` on, the decoder predicts,
for every output frame t, a direct rendering d_t, a flow f_t (pixels, (dy, dx)) and a gate g_t in
(0, 1), and the frame is

    y_0 = d_0                                          (the first frame has nothing to reuse)
    y_t = g_t · d_t + (1 - g_t) · warp(y_t-1, f_t)     (backward warp: y_t(p) reads y_t-1(p + f_t(p)))

so detail drawn once can be carried forward, and the codes need only correct it. The recursion runs
frame by frame; its only state is the last frame, which the streaming decoder carries between pushes,
so streaming and whole-clip decoding stay equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MOTION_CHANNELS = 3  # flow (dy, dx) in pixels, and the gate's logit


def warp(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp frame (B, C, H, W) by flow (B, 2, H, W) in pixels (dy, dx); edges repeat the border."""
    b, _, h, w = frame.shape
    ys = torch.arange(h, device=frame.device, dtype=frame.dtype).view(1, h, 1)
    xs = torch.arange(w, device=frame.device, dtype=frame.dtype).view(1, 1, w)
    # grid_sample wants (x, y) in [-1, 1] with align_corners=True: -1 is pixel 0, +1 is pixel size-1
    gx = (xs + flow[:, 1]) * (2.0 / max(w - 1, 1)) - 1.0  # (B, H, W)
    gy = (ys + flow[:, 0]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(frame, grid, mode="bilinear", padding_mode="border", align_corners=True)


def render(direct: torch.Tensor, motion: torch.Tensor, prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """direct (B, C, T, H, W), motion (B, 3, T, H, W), prev (B, C, H, W) or None (the clip starts here)
    -> frames (B, C, T, H, W) and the last frame (B, C, H, W), the state for the next call. Runs in float32."""
    direct, motion = direct.float(), motion.float()
    frames = []
    for t in range(direct.shape[2]):
        y = direct[:, :, t]
        if prev is not None:
            gate = torch.sigmoid(motion[:, 2:3, t])  # (B, 1, H, W)
            y = gate * y + (1.0 - gate) * warp(prev, motion[:, :2, t])
        frames.append(y)
        prev = y
    return torch.stack(frames, dim=2), prev
