"""What every arvid dataset is: an indexable, deterministic source of clips.

`ds[i]` returns the same `Clip` for the same (dataset settings, seed, i), on any machine, so training
batches are a pure function of the step (which makes `--resume` exact) and evaluation clips are
reproducible. Synthetic datasets are unbounded; `len(ds)` is a large virtual size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arvid.errors import ArvidError

VIRTUAL_LENGTH = 2**31 - 1  # index space of the synthetic datasets


@dataclass(frozen=True)
class Clip:
    video: np.ndarray  # uint8 (T, H, W, C)
    labels: np.ndarray  # int64 (k,): class of each object, or (1,) folder class; empty if unlabelled


class ClipDataset:
    """Base class. Subclasses set the attributes below and implement `clip(i)`."""

    name: str = "dataset"
    frames: int
    height: int
    width: int
    channels: int
    fps: float = 8.0
    num_classes: int = 0  # 0: unlabelled
    labels_per_clip: int = 0
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return VIRTUAL_LENGTH

    def __getitem__(self, i: int) -> Clip:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"clip index {i} out of range for {self.name} of length {len(self)}")
        return self.clip(i)

    def clip(self, i: int) -> Clip:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_held_out(self) -> bool:
        """Whether this split's clips come from data that training never reads (the eval split, where it has some)."""
        return getattr(self, "split", "train") == "eval"

    @property
    def source(self) -> str:
        """A short phrase for tables: "held-out clips", or "clips (training split, not held out)"."""
        return "held-out clips" if self.is_held_out else "clips (training split, not held out)"

    def describe(self) -> str:
        """What the clips are, for a report: "held-out shapes clips", "training shapes clips"."""
        return f"{'held-out' if self.is_held_out else 'training'} {self.name} clips"

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Clips `indices` stacked: videos uint8 (B, T, H, W, C), labels int64 (B, k)."""
        clips = [self[i] for i in indices]
        return np.stack([c.video for c in clips]), np.stack([c.labels for c in clips])


SPLITS = ("train", "eval")
_SPLIT_STREAM = {"train": 0, "eval": 1}


def check_split(split: str) -> int:
    if split not in _SPLIT_STREAM:
        raise ArvidError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return _SPLIT_STREAM[split]


def clip_rng(seed: int, split: str, index: int, salt: int = 0) -> np.random.Generator:
    """The random stream of one clip: independent across seeds, splits and indices."""
    return np.random.default_rng([int(seed), check_split(split), int(index), int(salt)])


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ArvidError(f"size must be positive, got {size}")
    return h, w


def check_frames(frames: int) -> int:
    frames = int(frames)
    if frames < 1:
        raise ArvidError(f"--frames must be at least 1, got {frames}")
    return frames
