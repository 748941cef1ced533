"""Simple pixel statistics of clips: how bright, how dark, how colourful. They tell when a clip given to a model is
far from what the model was trained on (a colour street scene into a model of white digits on black), so the
pipeline can say what to expect instead of leaving the user to wonder at the result.

    stats = pixel_stats(frames)                     # uint8 (..., H, W, C)
    trained = training_stats(tokenizer.config.notes) # what a model saw, if known
    far = differences(stats, trained)                # [] when the clip looks like the training data

A model's training statistics come from its tokenizer's notes: `data_stats` (a `PixelStats.to_dict()`), where
training recorded them, else the statistics of the dataset the notes name, for arvid's generated datasets
(`KNOWN`, measured by `dataset_stats` on 32 training clips of 16 frames at 64x64; a test holds them to the
datasets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DARK = 32  # uint8 luma below which a pixel counts as dark
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as the pipeline turns colour to gray
MAX_SIDE = 256  # frames are subsampled to about this size before measuring: the statistics are of large areas
# how far an input may be from the training data before the pipeline says so
BRIGHTNESS_GAP = 0.2  # mean luma, in [0, 1]
DARK_GAP = 0.4  # share of dark pixels
COLOUR, GRAY = 0.06, 0.02  # mean colourfulness above COLOUR is colour footage; below GRAY, gray


@dataclass(frozen=True)
class PixelStats:
    """Statistics of uint8 frames: brightness (mean luma in [0, 1]), dark (the share of pixels whose luma is under
    DARK), colour (the mean over pixels of max(R, G, B) - min(R, G, B), in [0, 1]; 0 for gray frames)."""

    brightness: float
    dark: float
    colour: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d) -> "PixelStats | None":
        """The statistics a model's notes hold, or None where they are missing or malformed."""
        try:
            values = {k: float(d[k]) for k in ("brightness", "dark", "colour")}
        except (KeyError, TypeError, ValueError):
            return None
        return cls(**values) if all(0 <= v <= 1 for v in values.values()) else None


class StatsCounter:
    """Pixel statistics gathered over frames as they come: `push` uint8 frames (..., H, W, C), then `stats()`."""

    def __init__(self):
        self.pixels, self.luma, self.dark, self.colour = 0, 0.0, 0, 0.0

    def push(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        h, w = frames.shape[-3:-1]
        step = max(1, max(h, w) // MAX_SIDE)
        x = frames[..., ::step, ::step, :].astype(np.float32)
        luma = x[..., 0] if x.shape[-1] == 1 else x[..., :3] @ LUMA
        self.pixels += luma.size
        self.luma += float(luma.sum()) / 255
        self.dark += int((luma < DARK).sum())
        if x.shape[-1] == 3:
            self.colour += float((x.max(-1) - x.min(-1)).sum()) / 255

    def stats(self) -> PixelStats | None:
        if not self.pixels:
            return None
        n = self.pixels
        return PixelStats(self.luma / n, self.dark / n, self.colour / n)


def pixel_stats(frames: np.ndarray) -> PixelStats:
    """The statistics of uint8 frames (..., H, W, C), C 1 or 3."""
    counter = StatsCounter()
    counter.push(frames)
    return counter.stats()


def dataset_stats(dataset, clips: int = 32) -> PixelStats:
    """The statistics of a dataset's clips 0..clips-1."""
    counter = StatsCounter()
    for i in range(clips):
        counter.push(dataset[i].video)
    return counter.stats()


# name: (statistics, what the clips look like)
KNOWN = {
    "moving-mnist": (PixelStats(brightness=0.0452, dark=0.9405, colour=0.0), "Moving MNIST: white digits on black"),
    "shapes": (PixelStats(brightness=0.1405, dark=0.9056, colour=0.0913),
               "bouncing shapes: bright coloured shapes on a dark ground"),
}


def training_stats(notes: dict) -> tuple[PixelStats, str] | None:
    """What a model's training clips were like, from its tokenizer's notes: (statistics, a description), or None
    where the notes say nothing usable."""
    if not isinstance(notes, dict):
        return None
    stored = PixelStats.from_dict(notes.get("data_stats"))
    name = notes.get("dataset")
    if stored is not None:
        return stored, f"its training clips ({name})" if isinstance(name, str) else "its training clips"
    return KNOWN.get(name) if isinstance(name, str) else None


def differences(given: PixelStats, trained: PixelStats) -> list[str]:
    """What sets `given` apart from `trained`, in words; [] when nothing does."""
    out = []
    if given.colour > COLOUR and trained.colour < GRAY:
        out.append("it is in colour, the training clips are gray")
    elif given.colour < GRAY and trained.colour > COLOUR:
        out.append("it is gray, the training clips are in colour")
    if abs(given.brightness - trained.brightness) > BRIGHTNESS_GAP:
        out.append(f"mean brightness {given.brightness:.2f} against {trained.brightness:.2f}")
    if abs(given.dark - trained.dark) > DARK_GAP:
        out.append(f"{given.dark:.0%} dark pixels against {trained.dark:.0%}")
    return out


def far_notice(given: PixelStats | None, notes: dict) -> str | None:
    """One line saying how an input is far from a model's training data and what to expect, or None where it is
    not (or nothing is known of the training data). (A size or channel count other than the model's is said by the
    pipeline as it fits the input.)"""
    known = training_stats(notes)
    if given is None or known is None:
        return None
    trained, what = known
    found = differences(given, trained)
    if not found:
        return None
    return (f"this input is far from what the model was trained on ({what}): {'; '.join(found)}. Expect new frames "
            "that look like the training clips more than like the input")
