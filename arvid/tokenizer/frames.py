"""The frame-count rule, stated once: the one home of every count of frames against latent frames.

The tokenizer encodes the first frame on its own and then every τ frames into one latent frame, so
a clip must have T = 1 + k·τ frames (k >= 0) and gives t = 1 + k latent frames; images are
one-frame clips. A layered tokenizer (`arvid.tokenizer.layered`) is the one other shape: its first
latent frame is the reference picture, which makes no frame of its own (`first=0`), so its clips have
T = k·τ frames (k >= 1). Every function takes that count as `first` (the frames the first latent frame
makes: 1, or 0), read from the tokenizer's `first_frames`. Every part of arvid that turns frames into
latent frames or back goes through these functions:

    check_frames(T, τ)                t of a valid clip, or an error naming the valid lengths
    pixel_frames(t, τ)                T of t latent frames
    new_latent_frames(N, τ, ...)      latent frames to generate for N new frames (new clip or continuation)
    tail_start(T, τ)                  where the longest 1 + k·τ tail of T frames starts (what `extend` tokenizes)
    longest_prefix(T, τ)              the longest 1 + k·τ prefix of T frames
    fit_frames(video, τ, mode)        the explicit, opt-in way to make any clip fit: trim the tail, or pad it
                                      by repeating the last frame
"""

from __future__ import annotations

import numpy as np
import torch

from arvid.errors import ArvidError

FIT_MODES = ("trim", "pad")


def _check_first(first: int) -> int:
    if first not in (0, 1):
        raise ValueError(f"first is the number of frames the first latent frame makes, 0 or 1, got {first!r}")
    return first


def shortest_frames(tau: int, first: int = 1) -> int:
    """The shortest valid clip: 1 frame (first=1), or τ frames (first=0)."""
    return 1 if _check_first(first) else tau


def is_valid_frames(frames: int, tau: int, first: int = 1) -> bool:
    return frames >= shortest_frames(tau, first) and (frames - first) % tau == 0


def nearest_valid_frames(frames: int, tau: int, first: int = 1) -> tuple[int, ...]:
    """The valid lengths around `frames`: the largest below and the smallest above (first + k·τ)."""
    low = shortest_frames(tau, first)
    if frames <= low:
        return (low,)
    below = longest_prefix(frames, tau, first)
    above = below if is_valid_frames(frames, tau, first) else below + tau
    return tuple(sorted({below, above}))


def _lengths(tau: int, first: int) -> str:
    if first:
        return f"1 + k·{tau} frames (1, {1 + tau}, {1 + 2 * tau}, {1 + 3 * tau}, ...)"
    return f"k·{tau} frames ({tau}, {2 * tau}, {3 * tau}, ...)"


def check_frames(frames: int, tau: int, what: str = "clip", first: int = 1) -> int:
    """Return the number of latent frames t = 1 + (T - first) / τ, or raise ArvidError naming valid lengths."""
    frames = int(frames)
    if is_valid_frames(frames, tau, first):
        return 1 + (frames - first) // tau
    near = " or ".join(str(n) for n in nearest_valid_frames(frames, tau, first))
    raise ArvidError(
        f"{what} has {frames} frames, but this tokenizer (temporal factor τ={tau}) needs {_lengths(tau, first)}: "
        f"the nearest valid lengths are {near}; trim or pad the clip (fit_frames(video, {tau}, mode='trim'|'pad'), "
        f"or --fit trim|pad on the CLI)"
    )


def new_latent_frames(frames: int, tau: int, *, after_context: bool, first: int = 1) -> int:
    """Latent frames to generate for `frames` new frames: a new clip's first latent frame makes `first` frames
    (one, or none for a layered tokenizer's reference) and each later one τ (after a context every latent frame
    makes τ); the last may make more than are needed."""
    if after_context:
        return -(-frames // tau)
    return 1 + -(-(frames - _check_first(first)) // tau)


def tail_start(frames: int, tau: int, first: int = 1) -> int:
    """First frame of the longest first + k·τ tail of a clip of `frames` frames: tokenizing from there makes the
    tokens end exactly at the last frame; the frames before it are not tokenized. A clip shorter than the
    shortest valid one has no such tail: the result is then `frames` (an empty tail)."""
    if frames < shortest_frames(tau, first):
        return frames
    return (frames - first) % tau


def longest_prefix(frames: int, tau: int, first: int = 1) -> int:
    """The number of frames of the longest first + k·τ prefix of a clip of `frames` frames (0 if none fits)."""
    if frames < shortest_frames(tau, first):
        return 0
    return first + (frames - first) // tau * tau


def pixel_frames(latent: int, tau: int, first: int = 1) -> int:
    """T = first + (t - 1)·τ for t latent frames."""
    if latent < 1:
        raise ArvidError(f"a clip needs at least one latent frame, got {latent}")
    return _check_first(first) + (int(latent) - 1) * tau


def fit_frames(video, tau: int, mode: str = "trim", time_axis: int | None = None, first: int = 1):
    """Make a clip first + k·τ frames long: "trim" drops frames from the end, "pad" repeats the last frame
    (a clip shorter than the shortest valid one is always padded).

    `video` is a numpy array (T, H, W, C) (time axis 0) or a tensor (B, C, T, H, W) (time axis 2),
    unless `time_axis` says otherwise. A clip that already fits is returned unchanged.
    """
    if mode not in FIT_MODES:
        raise ArvidError(f"unknown fit mode {mode!r}: use one of {', '.join(FIT_MODES)}")
    axis = time_axis if time_axis is not None else (0 if isinstance(video, np.ndarray) else 2)
    frames = video.shape[axis]
    if frames < 1:
        raise ArvidError("cannot fit an empty clip (0 frames)")
    if is_valid_frames(frames, tau, first):
        return video
    near = nearest_valid_frames(frames, tau, first)
    below, above = (near[0], near[-1]) if len(near) == 2 else (0, near[0])
    if mode == "trim" and below > 0:
        index = list(range(below))
    else:
        index = list(range(frames)) + [frames - 1] * (above - frames)
    if isinstance(video, np.ndarray):
        return np.take(video, index, axis=axis)
    return torch.index_select(video, axis, torch.tensor(index, device=video.device))
