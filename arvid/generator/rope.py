"""3D rotary position embedding over (time, row, column) of a latent token.

The head is split into three bands of frequency pairs: time, row and column. A query at time t_q
and a key at time t_k interact through their rotations only by t_k - t_q, so time enters relative
to the query. Rows and columns are absolute inside a frame (the frame is always h x w).

Angles are computed in float64 from integer positions, so a key cached at frame 10,000 is rotated
as precisely as one at frame 10, and then rounded once to float32.

Sinks: the sink keys (the first latent frames) are moved in time to sit just before the query's
window, by an extra temporal rotation `time_rotation(shift)` applied on read (see `sink_shift`).
"""

from __future__ import annotations

import torch

from arvid.generator.config import GeneratorConfig


def bands(head_size: int) -> tuple[int, int, int]:
    """Frequency pairs given to (time, row, column): rows and columns a third each, time the rest."""
    pairs = head_size // 2
    spatial = pairs // 3
    return pairs - 2 * spatial, spatial, spatial


def _inv_freq(n: int, base: float, device) -> torch.Tensor:
    return base ** (-torch.arange(n, device=device, dtype=torch.float64) / max(n, 1))  # (n,)


def _cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return angles.cos().float(), angles.sin().float()


def slot_angles(cfg: GeneratorConfig, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (..., hs/2) of slots `pos` (int64, any shape): time p // F, row, column."""
    n_t, n_r, n_c = bands(cfg.head_size)
    F, w = cfg.frame_tokens, cfg.latent_w
    t, r, c = (pos // F).double(), ((pos % F) // w).double(), (pos % w).double()
    angles = torch.cat([t[..., None] * _inv_freq(n_t, cfg.rope_base, pos.device),
                        r[..., None] * _inv_freq(n_r, cfg.rope_base, pos.device),
                        c[..., None] * _inv_freq(n_c, cfg.rope_base, pos.device)], dim=-1)
    return _cos_sin(angles)


def time_rotation(cfg: GeneratorConfig, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (..., hs/2) of a rotation by `shift` latent frames in time only (rows, columns fixed)."""
    n_t, n_r, n_c = bands(cfg.head_size)
    angles = shift.double()[..., None] * _inv_freq(n_t, cfg.rope_base, shift.device)
    angles = torch.cat([angles, angles.new_zeros(*angles.shape[:-1], n_r + n_c)], dim=-1)
    return _cos_sin(angles)


def sink_shift(cfg: GeneratorConfig, query_frame: torch.Tensor) -> torch.Tensor:
    """Frames by which the sinks move forward for a query in `query_frame` (int64, any shape).

    The window of a query in frame t covers the W·F positions before it: into frame t - W for a raster
    model, frames t - W + 1 .. t for a masked one (frame-causal). The s sink frames are placed at
    t - W - s .. t - W - 1, just before the raster window (a frame before the masked one), once the query
    is far enough to need it. Before that
    (t <= W + s) they sit at their true time. A sink is thus never farther than W + s frames from a
    query: the same distances training shows, however long the clip.
    """
    return (query_frame - cfg.window_frames - cfg.sink_frames).clamp(min=0)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i+hs/2}) of x (..., L, hs) by angles with cos, sin broadcastable to (..., L, hs/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (..., L, hs/2) each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


__all__ = ["bands", "rotate", "sink_shift", "slot_angles", "time_rotation"]
