"""Decoder-side motion extrapolation: the next frames predicted from the last two decoded ones.

A context tokenizer (model.py) codes each latent frame against what the decoder already shows. With
`motion_search` on, what it shows includes a prediction of each of the τ frames to come, made the way
a codec predicts motion from the past instead of sending it:

1. Every pixel q of the last decoded frame gets an integer velocity v(q) (|v| <= radius px per frame on
   each axis): the displacement that best explains the last two frames around q,
       v(q) = argmin_v  mean over a window around q of |last(q') - older(q' - v)|  +  1e-3·|v|_1
   (the small penalty keeps flat regions, where every displacement fits, still).
2. Frame n ahead (n = 1..τ) moves every moving pixel to q + n·v(q). Where moving pixels meet, the
   brightest wins (as Moving MNIST composes digits); moving pixels cover still ones; still pixels stay.
   A pixel that moved away with nothing landing on it (uncovered background) takes the mean of the still
   pixels, the frame's background as far as two frames tell, and is flagged for the network.

The prediction copies pixels (integer shifts, no interpolation), so it does not blur however often it
is reapplied, and it reads only decoded frames: the decoder makes it from the codes alone, the encoder
makes the same one, and both stay causal and streamable (the state is the last two frames). The
network learns what to take from it; where the motion is not constant (a bounce), the codes correct it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TIE_PENALTY = 1e-3  # per pixel of |v|_1, far below any visible difference in [-1, 1] units
WINDOW = 9  # side of the square matching window around each pixel (odd)


def displacements(radius: int) -> torch.Tensor:
    """All integer displacements (dy, dx) with |dy|, |dx| <= radius: (S, 2), S = (2·radius + 1)²."""
    r = torch.arange(-radius, radius + 1)
    return torch.cartesian_prod(r, r)


def velocities(history: torch.Tensor, radius: int) -> torch.Tensor:
    """history (B, C, 2, H, W), the last two frames (older first) -> integer velocity (dy, dx) of every pixel of
    the last frame, (B, H, W, 2) int64, found by block matching against the older frame (step 1 above)."""
    older, last = history[:, :, 0].float(), history[:, :, 1].float()
    b, c, h, w = last.shape
    k, size = WINDOW // 2, 2 * radius + 1
    older_p = F.pad(older, (radius,) * 4, mode="replicate")
    # every displaced copy at once: patches[:, ci, i·size + j] = older(q + (i - radius, j - radius)) = older(q - v)
    # for v = (radius - i, radius - j)
    patches = F.unfold(older_p, size).view(b, c, size * size, h, w)
    err = (patches - last[:, :, None]).abs().mean(1)  # (B, S, H, W)
    cost = F.avg_pool2d(err, (1, WINDOW), stride=1, padding=(0, k), count_include_pad=False)  # a box filter, separably
    cost = F.avg_pool2d(cost, (WINDOW, 1), stride=1, padding=(k, 0), count_include_pad=False)
    d = -displacements(radius).to(last.device)  # (S, 2): the velocity of patch entry s, (radius - i, radius - j)
    cost = cost + TIE_PENALTY * d.abs().sum(1).float().view(1, -1, 1, 1)
    return d[cost.argmin(1)]  # (B, H, W, 2)


def extrapolate(history: torch.Tensor, steps: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """history (B, C, 2, H, W), the last two decoded frames (older first) -> (the next `steps` frames predicted by
    constant-velocity motion (B, C, steps, H, W), and where nothing landed (B, 1, steps, H, W) as 0/1).
    Gradients reach the last frame through the copied pixels; the motion search itself is not differentiated."""
    last = history[:, :, 1]
    b, c, h, w = last.shape
    if torch.equal(history[:, :, 0], last):  # nothing moved (a clip's first frame counts twice): the search finds 0
        return last[:, :, None].expand(b, c, steps, h, w), last.new_zeros(b, 1, steps, h, w)
    with torch.no_grad():
        v = velocities(history, radius)  # (B, H, W, 2)
        moving = (v != 0).any(-1).view(b, 1, h * w)  # (B, 1, H·W)
        ys = torch.arange(h, device=last.device).view(1, h, 1)
        xs = torch.arange(w, device=last.device).view(1, 1, w)
    flat = last.reshape(b, c, h * w)
    low = torch.finfo(flat.dtype).min
    still = ~moving  # a still pixel stays where it is, under whatever moves onto it
    background = (flat * still).sum(2, keepdim=True) / still.sum(2, keepdim=True).clamp(min=1)  # (B, C, 1)
    preds, holes = [], []
    for n in range(1, steps + 1):
        with torch.no_grad():
            ty, tx = ys + n * v[..., 0], xs + n * v[..., 1]  # (B, H, W): where each pixel lands
            lands = ((ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)).view(b, 1, h * w) & moving
            index = (ty.clamp(0, h - 1) * w + tx.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
            hit = torch.zeros(b, 1, h * w, device=last.device).scatter_reduce(
                2, index[:, :1], lands.float(), reduce="amax", include_self=True) > 0  # a moving pixel lands here
        movers = torch.where(lands, flat, torch.full_like(flat, low))
        landed = torch.full_like(flat, low).scatter_reduce(2, index, movers, reduce="amax", include_self=True)
        hole = ~hit & moving
        pred = torch.where(hit, landed, torch.where(hole, background.expand_as(flat), flat))
        preds.append(pred.view(b, c, h, w))
        holes.append(hole.float().view(b, 1, h, w))
    return torch.stack(preds, dim=2), torch.stack(holes, dim=2)
