"""A folder of the user's own videos, sampled as random clips for training on real footage.

Every video file under the folder (recursively) is a source, recognised by its content, whatever its name: anything
`arvid.video.read_video` reads as a clip (MP4/MOV, Matroska/WebM, AVI, GIF, MPEG program and transport streams,
FLV, ..., and .npy arrays). Other files (images, text, hidden files) are skipped and listed in `skipped`. Clip i
picks a file and a start frame from its own random stream, takes `frames` frames `stride` apart, and fits them to
`size` (resize the short side, centre-crop). If videos sit in subfolders, the first subfolder name is the clip's
class (e.g. `walking/a.mp4` -> class "walking"), so a generator can be conditioned on it; otherwise clips are
unlabelled.

Held out for evaluation: about a tenth of the files (HOLD_OUT), chosen by their path relative to the folder
(`file_share`: a hash, so the choice does not depend on the machine, the order of the files or the folder's
place), and at least one once the folder has MIN_FILES_TO_HOLD_OUT files. The "train" split samples only the other
files and never decodes a held-out one (the scan reads only each file's first bytes, to know it is a video); the
"eval" split samples only the held-out ones. A file's share never changes, so once a folder has
MIN_FILES_TO_HOLD_OUT files, adding files never moves a training file into the held-out set, and a model trained
before is still evaluated on files it never saw. (Where no file's share falls under HOLD_OUT, the file with the
lowest share is held out to make one; a new file with a lower share takes its place, and that file returns to
training. Every file but one is the most ever held out.) A folder with fewer than MIN_FILES_TO_HOLD_OUT files
holds none out: its "eval" split reads the training files, `eval_is_held_out` is False, and `notice()` says so;
when it grows to MIN_FILES_TO_HOLD_OUT files, one of the files trained on becomes held out.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from arvid.data.base import Clip, ClipDataset, as_size, check_frames, check_split, clip_rng
from arvid.errors import ArvidError

HOLD_OUT = 0.1  # the share of a folder's files held out for evaluation
MIN_FILES_TO_HOLD_OUT = 3  # with fewer video files, every one is needed for training: none is held out
SHOWN = 4  # files named in a notice before "..."


def file_share(relative: str) -> float:
    """A file's place in [0, 1), from its path relative to the folder ('walking/a.mp4'): the first 8 bytes of the
    SHA-256 of that path as a fraction. The same on every machine; files under HOLD_OUT are held out."""
    digest = hashlib.sha256(relative.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out_files(relative: list[str]) -> list[str]:
    """Which of a folder's video files (paths relative to it) are held out for evaluation (see the module
    docstring): those whose share is under HOLD_OUT, at least one and never all of them; none under
    MIN_FILES_TO_HOLD_OUT files."""
    if len(relative) < MIN_FILES_TO_HOLD_OUT:
        return []
    by_share = sorted(relative, key=file_share)
    held = [r for r in by_share if file_share(r) < HOLD_OUT] or by_share[:1]
    return sorted(held[: len(relative) - 1])


def scan_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """(the video files under `root`, the other files skipped), each sorted; hidden files and folders are passed
    over without a word (.DS_Store, ._a.mp4)."""
    from arvid.video.io import is_video_file

    videos, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file():
                continue
            (videos if is_video_file(path) else skipped).append(path)
    return sorted(videos), sorted(skipped)


class VideoFolder(ClipDataset):
    name = "folder"

    def __init__(self, path, frames: int = 16, size=64, split: str = "train", seed: int = 0,
                 stride: int = 1, channels: int = 3, cache_videos: int = 8):
        root = Path(path) if path is not None else None
        if root is None:
            raise ArvidError("the folder dataset needs a path: --path DIR (a folder of video files)")
        if not root.is_dir():
            raise ArvidError(f"video folder {root} does not exist or is not a folder")
        if stride < 1:
            raise ArvidError(f"stride must be at least 1, got {stride}")
        if channels not in (1, 3):
            raise ArvidError(f"channels must be 1 or 3, got {channels}")
        check_split(split)
        videos, self.skipped = scan_folder(root)
        if not videos:
            other = f" ({len(self.skipped)} other files skipped: {_names(root, self.skipped)})" if self.skipped else ""
            raise ArvidError(f"no video files found under {root}{other}: give a folder of videos (mp4, mov, mkv, webm, "
                             "avi, mpg, ts, gif, .npy ...)")
        self.root, self.frames, self.stride = root, check_frames(frames), int(stride)
        self.height, self.width = as_size(size)
        self.split, self.seed, self.channels = split, int(seed), int(channels)
        self.all_files = videos
        held = set(held_out_files([_relative(root, p) for p in videos]))
        self.held_out = [p for p in videos if _relative(root, p) in held]  # files training never reads
        self.eval_is_held_out = bool(self.held_out)
        if split == "train" or not self.held_out:
            self.files = [p for p in videos if _relative(root, p) not in held]
        else:
            self.files = list(self.held_out)
        # classes from every file (both splits number them alike); a clip's class is its file's first folder
        groups = [_group(root, p) for p in videos]
        self.class_names = tuple(sorted(set(groups) - {""}))
        self.num_classes = len(self.class_names)
        self.labels_per_clip = 1 if self.num_classes else 0
        self.file_class = [self.class_names.index(g) if g else -1 for g in map(functools.partial(_group, root), self.files)]
        self._read = functools.lru_cache(maxsize=cache_videos)(self._read_fitted)
        self.fps = self._read(0)[1]

    @property
    def is_held_out(self) -> bool:
        return self.split == "eval" and self.eval_is_held_out

    @property
    def source(self) -> str:
        if self.split == "eval" and not self.eval_is_held_out:
            return "clips (from the training files, not held out)"
        return super().source

    def describe(self) -> str:
        if self.split == "train":
            return f"training clips of {self.root} ({len(self.files)} files)"
        if self.eval_is_held_out:
            return f"held-out clips of {self.root} ({len(self.held_out)} of {len(self.all_files)} files held out)"
        return f"clips of the training files of {self.root}, not held out (too few files to hold any out)"

    def notice(self) -> str:
        """One line on what is held out (or that nothing could be) and what was skipped, for a run to print."""
        n = len(self.all_files)
        if self.held_out:
            line = f"held out for evaluation: {len(self.held_out)} of {n} files: {_names(self.root, self.held_out)}"
        else:
            line = (f"held out for evaluation: none ({n} video file{'s' if n != 1 else ''}; at least "
                    f"{MIN_FILES_TO_HOLD_OUT} are needed to hold one out): evaluation clips come from the training "
                    "files, not held out")
        if self.skipped:
            line += f"; skipped {len(self.skipped)} files that are not videos: {_names(self.root, self.skipped)}"
        return line

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
        which = "held-out " if self.is_held_out else "training " if self.eval_is_held_out else ""
        raise ArvidError(
            f"no {which}video under {self.root} has {span} frames ({self.frames} frames at stride {self.stride}): "
            "lower --frames or --stride"
        )


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _group(root: Path, path: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else ""


def _names(root: Path, paths: list[Path]) -> str:
    names = [_relative(root, p) for p in paths]
    return ", ".join(names[:SHOWN]) + (f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else "")
