"""Datasets: deterministic, indexable sources of clips (see `arvid.data.base`).

    ds = make_dataset("moving-mnist", frames=20, size=64, split="train", seed=0)
    clip = ds[0]          # Clip(video uint8 (T, H, W, C), labels int64 (k,))
"""

from __future__ import annotations

from arvid.data.base import SPLITS, Clip, ClipDataset
from arvid.data.folder import VideoFolder
from arvid.data.moving_mnist import MovingMNIST, mnist_digits
from arvid.data.shapes import BouncingShapes
from arvid.errors import ArvidError

DATASETS = {"moving-mnist": MovingMNIST, "shapes": BouncingShapes, "folder": VideoFolder}


def make_dataset(name: str, *, frames: int = 20, size=64, split: str = "train", seed: int = 0,
                 path=None, stride: int = 1, **kwargs) -> ClipDataset:
    """Build a dataset by name: "moving-mnist", "shapes" or "folder" (which needs `path`)."""
    if name not in DATASETS:
        raise ArvidError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    if name == "folder":
        return VideoFolder(path, frames=frames, size=size, split=split, seed=seed, stride=stride, **kwargs)
    if path is not None:
        raise ArvidError(f"dataset {name!r} is generated; --path is only for the folder dataset")
    return DATASETS[name](frames=frames, size=size, split=split, seed=seed, **kwargs)


__all__ = ["DATASETS", "SPLITS", "BouncingShapes", "Clip", "ClipDataset", "MovingMNIST", "VideoFolder",
           "make_dataset", "mnist_digits"]
