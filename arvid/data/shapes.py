"""Bouncing shapes: coloured circles, squares and triangles moving with simple physics.

Each shape has a kind, a colour, a size, a start position and a velocity; it bounces off the walls
(elastic), optionally falls under gravity, and later shapes are drawn over earlier ones. RGB, C = 3.
Labels are the kinds of the shapes (0 circle, 1 square, 2 triangle). Small and fast to render, so
tests and colour experiments use it.
"""

from __future__ import annotations

import numpy as np

from arvid.data.base import Clip, ClipDataset, as_size, check_frames, check_split, clip_rng
from arvid.errors import ArvidError

KINDS = ("circle", "square", "triangle")
PALETTE = np.array(
    [[230, 60, 50], [60, 180, 75], [60, 110, 230], [250, 200, 40], [200, 80, 220], [40, 200, 220]],
    dtype=np.uint8,
)
BACKGROUND = np.array([24, 24, 32], dtype=np.uint8)


def shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """Boolean (H, W) mask of one shape centred at (cy, cx) with half-size r."""
    dy, dx = yy - cy, xx - cx
    if kind == 0:
        return dy * dy + dx * dx <= r * r
    if kind == 1:
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    # triangle pointing up: inside when below the two slanted edges and above the base
    return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)


class BouncingShapes(ClipDataset):
    name = "shapes"
    channels = 3
    num_classes = len(KINDS)
    class_names = KINDS

    def __init__(self, frames: int = 20, size=64, split: str = "train", seed: int = 0,
                 num_shapes: int = 2, gravity: float = 0.0, fps: float = 8.0):
        self.frames = check_frames(frames)
        self.height, self.width = as_size(size)
        if min(self.height, self.width) < 8:
            raise ArvidError(f"bouncing shapes need frames of at least 8x8, got {self.height}x{self.width}")
        if not 1 <= num_shapes <= 8:
            raise ArvidError(f"num_shapes must be between 1 and 8, got {num_shapes}")
        check_split(split)
        self.split, self.seed, self.num_shapes = split, int(seed), int(num_shapes)
        self.gravity, self.fps, self.labels_per_clip = float(gravity), float(fps), int(num_shapes)

    def clip(self, i: int) -> Clip:
        rng = clip_rng(self.seed, self.split, i)
        H, W = self.height, self.width
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        video = np.broadcast_to(BACKGROUND, (self.frames, H, W, 3)).copy()
        kinds = rng.integers(0, len(KINDS), size=self.num_shapes)
        colours = rng.choice(len(PALETTE), size=self.num_shapes, replace=self.num_shapes > len(PALETTE))
        for kind, colour in zip(kinds, colours):
            r = rng.uniform(0.08, 0.16) * min(H, W)
            pos = np.array([rng.uniform(r, H - 1 - r), rng.uniform(r, W - 1 - r)])
            theta = rng.uniform(0, 2 * np.pi)
            vel = rng.uniform(0.03, 0.06) * min(H, W) * np.array([np.sin(theta), np.cos(theta)])
            lo, hi = np.array([r, r]), np.array([H - 1 - r, W - 1 - r])
            for t in range(self.frames):
                video[t][shape_mask(int(kind), yy, xx, pos[0], pos[1], r)] = PALETTE[colour]
                vel[0] += self.gravity
                pos = pos + vel
                low, high = pos < lo, pos > hi
                pos = np.where(low, 2 * lo - pos, np.where(high, 2 * hi - pos, pos))
                vel = np.where(low | high, -vel, vel)
        return Clip(video=video, labels=kinds.astype(np.int64))
