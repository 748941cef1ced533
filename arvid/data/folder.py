"""A folder of the user's own videos, sampled as random clips for training on real footage.

Every video file under the folder (recursively: mp4, webm, mkv, avi, gif, npy) is a source. Clip i
picks a file and a start frame from its own random stream, takes `frames` frames `stride` apart, and
fits them to `size` (resize the short side, centre-crop). If videos sit in subfolders, the first
subfolder name is the clip's class (e.g. `walking/a.mp4` -> class "walking"), so a generator can be
conditioned on it; otherwise clips are unlabelled.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from arvid.data.base import Clip, ClipDataset, as_size, check_frames, check_split, clip_rng
from arvid.errors import ArvidError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".gif", ".mov", ".npy")


class VideoFolder(ClipDataset):
    name = "folder"

    def __init__(self, path, frames: int = 16, size=64, split: str = "train", seed: int = 0,
                 stride: int = 1, channels: int = 3, cache_videos: int = 8):
        root = Path(path) if path is not None else None
        if root is None:
            raise ArvidError("the folder dataset needs a path: --path DIR (a folder of video files)")
        if not root.is_dir():
            raise ArvidError(f"video folder {root} does not exist or is not a folder")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not self.files:
            raise ArvidError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) found under {root}")
        if stride < 1:
            raise ArvidError(f"stride must be at least 1, got {stride}")
        if channels not in (1, 3):
            raise ArvidError(f"channels must be 1 or 3, got {channels}")
        check_split(split)
        self.root, self.frames, self.stride = root, check_frames(frames), int(stride)
        self.height, self.width = as_size(size)
        self.split, self.seed, self.channels = split, int(seed), int(channels)
        groups = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in self.files]
        self.class_names = tuple(sorted(set(groups) - {""}))
        self.file_class = [self.class_names.index(g) if g else -1 for g in groups]
        self.num_classes = len(self.class_names)
        self.labels_per_clip = 1 if self.num_classes else 0
        self._read = functools.lru_cache(maxsize=cache_videos)(self._read_fitted)
        self.fps = self._read(0)[1]

    def _read_fitted(self, file_index: int) -> tuple[np.ndarray, float]:
        from arvid.video import fit_video, read_video

        video = read_video(self.files[file_index], channels=self.channels)
        return fit_video(video.frames, (self.height, self.width)), video.fps

    def clip(self, i: int) -> Clip:
        rng = clip_rng(self.seed, self.split, i)
        span = (self.frames - 1) * self.stride + 1
        for _ in range(8 * len(self.files)):
            f = int(rng.integers(0, len(self.files)))
            frames, _ = self._read(f)
            if len(frames) >= span:
                start = int(rng.integers(0, len(frames) - span + 1))
                video = frames[start : start + span : self.stride]
                labels = np.array([self.file_class[f]] if self.num_classes else [], dtype=np.int64)
                return Clip(video=np.ascontiguousarray(video), labels=labels)
        raise ArvidError(
            f"no video under {self.root} has {span} frames ({self.frames} frames at stride {self.stride}): "
            "lower --frames or --stride"
        )
