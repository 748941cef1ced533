"""The frame-count rule, stated once: the one home of every count of frames against latent frames.

The tokenizer encodes the first frame on its own and then every τ frames into one latent frame, so
a clip must have T = 1 + k·τ frames (k >= 0) and gives t = 1 + k latent frames; images are
one-frame clips. Every part of arvid that turns frames into latent frames or back goes through
these functions:

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


def is_valid_frames(frames: int, tau: int) -> bool:
    return frames >= 1 and (frames - 1) % tau == 0


def nearest_valid_frames(frames: int, tau: int) -> tuple[int, ...]:
    """The valid lengths around `frames`: the largest below and the smallest above (1 + k·τ)."""
    if frames < 1:
        return (1,)
    below = longest_prefix(frames, tau)
    above = below if is_valid_frames(frames, tau) else below + tau
    return tuple(sorted({below, above}))


def check_frames(frames: int, tau: int, what: str = "clip") -> int:
    """Return the number of latent frames t = 1 + (T - 1) / τ, or raise ArvidError naming valid lengths."""
    frames = int(frames)
    if is_valid_frames(frames, tau):
        return 1 + (frames - 1) // tau
    near = " or ".join(str(n) for n in nearest_valid_frames(frames, tau))
    raise ArvidError(
        f"{what} has {frames} frames, but this tokenizer (temporal factor τ={tau}) needs 1 + k·{tau} frames "
        f"(1, {1 + tau}, {1 + 2 * tau}, {1 + 3 * tau}, ...): the nearest valid lengths are {near}; "
        f"trim or pad the clip (fit_frames(video, {tau}, mode='trim'|'pad'), or --fit trim|pad on the CLI)"
    )


def new_latent_frames(frames: int, tau: int, *, after_context: bool) -> int:
    """Latent frames to generate for `frames` new frames: a new clip's first latent frame makes one frame and
    each later one τ (after a context every latent frame makes τ); the last may make more than are needed."""
    if after_context:
        return -(-frames // tau)
    return 1 + -(-(frames - 1) // tau)


def tail_start(frames: int, tau: int) -> int:
    """First frame of the longest 1 + k·τ tail of a clip of `frames` frames: tokenizing from there makes the
    tokens end exactly at the last frame; the frames before it are not tokenized."""
    return (frames - 1) % tau


def longest_prefix(frames: int, tau: int) -> int:
    """The number of frames of the longest 1 + k·τ prefix of a clip of `frames` >= 1 frames."""
    return 1 + (frames - 1) // tau * tau


def pixel_frames(latent: int, tau: int) -> int:
    """T = 1 + (t - 1)·τ for t latent frames."""
    if latent < 1:
        raise ArvidError(f"a clip needs at least one latent frame, got {latent}")
    return 1 + (int(latent) - 1) * tau


def fit_frames(video, tau: int, mode: str = "trim", time_axis: int | None = None):
    """Make a clip 1 + k·τ frames long: "trim" drops frames from the end, "pad" repeats the last frame.

    `video` is a numpy array (T, H, W, C) (time axis 0) or a tensor (B, C, T, H, W) (time axis 2),
    unless `time_axis` says otherwise. A clip that already fits is returned unchanged.
    """
    if mode not in FIT_MODES:
        raise ArvidError(f"unknown fit mode {mode!r}: use one of {', '.join(FIT_MODES)}")
    axis = time_axis if time_axis is not None else (0 if isinstance(video, np.ndarray) else 2)
    frames = video.shape[axis]
    if frames < 1:
        raise ArvidError("cannot fit an empty clip (0 frames)")
    if is_valid_frames(frames, tau):
        return video
    below, above = nearest_valid_frames(frames, tau)
    if mode == "trim":
        index = list(range(below))
    else:
        index = list(range(frames)) + [frames - 1] * (above - frames)
    if isinstance(video, np.ndarray):
        return np.take(video, index, axis=axis)
    return torch.index_select(video, axis, torch.tensor(index, device=video.device))
