"""Measure what a trained model generates: `arvid eval generation`.

Any model is measured on its own kind of data (`Data`): the eval split of a dataset at the model's size and
colour: Moving MNIST (digits 4000-4999 and seeds training never used), bouncing shapes (seeds training never
used), or a folder of videos (its held-out files; a folder too small to hold any out is measured on its training
files, and the report says so). Clips' labels are given to the model where it takes labels of that kind. The
digit measures (labels shown, identity, the long-clip collapse rule, which counts digits) apply to Moving MNIST
models (64x64, 1 channel) only.

Three protocols, each batched through the pipeline's public streaming API (`Arvid.stream`, and `Arvid.latents` /
`Arvid.render` for the ablation):

1. Continuation: `context` real frames given (as tokens), `predict` frames generated, compared with the
   true frames. Per-frame MSE is the sum over the frame of squared errors of pixels in [0, 1] (the
   Moving MNIST convention: ConvLSTM 103.3, PredRNN 56.8, SimVP 23.8 on the standard test set), PSNR of
   the clips' mean squared error at each frame, SSIM as in `arvid eval tokenizer`. Baselines on the same clips: "copy the last given frame", and the
   tokenizer's own reconstruction of the true frames (the floor any generator of these tokens has).
2. Temporal consistency: the warping error of consecutive frames: Farneback flow from frame t to frame
   t-1 (OpenCV), frame t-1 warped onto frame t along it (bilinear), and the mean absolute difference in
   [0, 1] of the warped and the real frame t, averaged over frame pairs and clips. Real clips against
   generated clips of the same length against the no-context ablation: the same weights sampling each
   latent frame on its own, as the first frame of a new clip, so it sees no earlier frame (see `rollout`).
   A frozen or blank clip has almost no warping error, so "within 1.5x of real" is checked both ways.
   Identity, on the same clips: every legible digit tracked from frame to frame and read by a single-digit
   reader (arvid/eval/identity.py); identity switches per 100 tracked steps and the share of digits read
   confidently, of every clip set against the real clips read the same way.
3. Long clips (Moving MNIST): clips of `long_frames` frames (1,024 by default), consumed as they stream (constant
   memory), summarized per block of 64 frames by mean intensity and digit blobs (8-connected components
   of the frame thresholded at 128, of at least MIN_BLOB_AREA pixels). A clip collapses when a block
   goes blank (mean intensity under half the real clips' lowest block mean), saturates (over twice
   their highest), multiplies or loses digits (block mean blob count outside [lo - 0.5, hi + 0.5], [lo,
   hi] being the range of real clips' block means), or loses a digit for good (two blocks in a row
   without a single frame of two or more blobs; digits overlap now and then, but not for 128 frames).
   The same rule is run on the real clips, and the report says how many it flags.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arvid.data import make_dataset
from arvid.errors import ArvidError
from arvid.eval.digits import label_hits, train_reader
from arvid.eval.identity import (CONFIDENT, EXPECTED, THRESHOLD, clip_identity, heldout_accuracy, identity_reader,
                                 summarize)
from arvid.eval.tokenizer import evaluate_tokenizer, psnr, ssim
from arvid.generator import Sampling
from arvid.pipeline import Arvid
from arvid.tokenizer import longest_prefix, new_latent_frames, tensor_to_video, video_to_tensor
from arvid.utils.atomic import atomic_path, atomic_write_text
from arvid.video import contact_sheet
from arvid.video.flow import backward_flows, warp_back

PUBLISHED_MSE = {"ConvLSTM": 103.3, "PredRNN": 56.8, "SimVP": 23.8}
BLOCK = 64  # frames per long-clip block
BLOB_THRESHOLD = 128  # uint8 level from which a pixel belongs to a digit
MIN_BLOB_AREA = 16  # pixels: smaller components are specks (99% of real digit pieces have >= 31)


# ---------------------------------------------------------------- rollouts


def rollout(model: Arvid, num_frames: int, sampling: Sampling, *, labels: np.ndarray | None,
            context: np.ndarray | None = None, seed: int = 0, no_context: bool = False,
            batch: int | None = None) -> Iterator[np.ndarray]:
    """Yield `num_frames` new frames uint8 (B, H, W, C) through the pipeline's streaming API, each clip with its
    own labels (B, k) and its own context clip (B, T0, H, W, C) of 1 + k·τ frames (tokenized; its last window of
    latent frames is kept).

    no_context: the ablation. Every latent frame is sampled on its own, as the first frame of a new clip
    (fresh cache, its own seed), so it sees no earlier frame; the decoder still joins them in order.
    (The generator's window is a sliding window over tokens, so a window of one frame would still show
    each token the previous frame's last tokens: that is not this ablation.)"""
    if not no_context:
        return model.stream(num_frames, context, seed=seed, labels=labels, batch=batch or 1, sampling=sampling)
    if context is not None:
        raise ArvidError("the no-context ablation takes no context clip")
    n_latent = new_latent_frames(num_frames, model.temporal_factor, after_context=False,
                                 first=model.tokenizer.first_frames)
    if model.tokenizer.first_frames == 0:  # layered: one reference, then each latent frame of motion after it alone
        from arvid.pipeline import Prepared

        ref = next(model.latents(1, seed=seed * 100_003, labels=labels, batch=batch, sampling=sampling))
        only = Prepared(frames=np.zeros((0,), np.uint8), context=ref[:, None])
        latents = itertools.chain([ref], (next(model.latents(1, only, seed=seed * 100_003 + i, labels=labels,
                                                             batch=batch, sampling=sampling))
                                          for i in range(1, n_latent)))
        return model.render(latents, num_frames, batch)
    latents = (next(model.latents(1, seed=seed * 100_003 + i, labels=labels, batch=batch, sampling=sampling))
               for i in range(n_latent))
    return model.render(latents, num_frames, batch)


# ---------------------------------------------------------------- frame measures


def frame_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-frame sum of squared errors of pixels in [0, 1]: (B, T, H, W, C) -> (T,) mean over clips."""
    d = pred.astype(np.float64) / 255 - true.astype(np.float64) / 255
    return (d**2).sum(axis=(2, 3, 4)).mean(axis=0)


def frame_psnr(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of the clips' mean squared error there (pixels in [0, 255]): (B, T, H, W, C) -> (T,)."""
    d = pred.astype(np.float64) - true.astype(np.float64)
    mse = (d**2).mean(axis=(0, 2, 3, 4))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / mse)


def frame_ssim(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-frame SSIM (B, T, H, W, C) -> (T,), mean over clips."""
    return np.array([np.mean([ssim(pred[b, t:t + 1], true[b, t:t + 1]) for b in range(pred.shape[0])])
                     for t in range(pred.shape[1])])


def _gray(clip: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W[, C]) -> (T, H, W): the luma of colour frames (ITU-R 601), the channel of gray ones."""
    if clip.ndim == 3 or clip.shape[-1] == 1:
        return clip[..., 0] if clip.ndim == 4 else clip
    return np.round(clip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)


def _flows(clip: np.ndarray) -> np.ndarray:
    """(T-1, H, W, 2) Farneback flows of a uint8 clip (T, H, W[, 1]), frame t back to t-1: what `warping_error` and
    `speed` take, so a clip measured both ways is run through the flow once."""
    return backward_flows(_gray(clip))


def warping_error(clip: np.ndarray, flows: np.ndarray | None = None) -> float:
    """Mean over consecutive pairs of |warp(frame t-1 -> t) - frame t| in [0, 1]; clip uint8 (T, H, W[, 1])."""
    frames = _gray(clip)
    if frames.shape[0] < 2:
        raise ArvidError("the warping error needs at least two frames")
    flows = _flows(clip) if flows is None else flows
    errs = [np.abs(warp_back(frames[t - 1], flow).astype(np.float64) - frames[t].astype(np.float64)).mean() / 255
            for t, flow in enumerate(flows, start=1)]
    return float(np.mean(errs))


def motion(clip: np.ndarray) -> float:
    """Mean |frame t - frame t-1| in [0, 1] of a uint8 clip (T, H, W[, C]): how much moves. A clip can lower its
    warping error by moving less; this shows whether it did."""
    return float(np.abs(np.diff(clip.astype(np.float32), axis=0)).mean() / 255)


def speed(clip: np.ndarray, bright: int = 64, flows: np.ndarray | None = None) -> float:
    """Mean optical-flow length in pixels per frame on the bright pixels (> `bright`, the digits) of a uint8 clip
    (T, H, W[, 1]): how far things move. Unlike `motion`, it does not fall when a clip only flickers less."""
    frames = _gray(clip)
    flows = _flows(clip) if flows is None else flows
    lengths = [float(np.linalg.norm(flow[frames[t] > bright], axis=-1).mean())
               for t, flow in enumerate(flows, start=1) if (frames[t] > bright).any()]
    return float(np.mean(lengths)) if lengths else 0.0


def sharpness(clip: np.ndarray) -> float:
    """Root mean square of the differences between neighbouring pixels (horizontal and vertical, in [0, 1]) of a uint8
    clip (T, H, W[, C]): how steep the edges are. Blur spreads an edge over more pixels, which keeps the sum of the
    differences but lowers their squares. Blur also lowers the warping error (a soft frame has less to get wrong);
    this shows whether a clip won it that way."""
    x = clip.astype(np.float32) / 255
    if x.ndim == 4:
        x = x.mean(axis=-1)
    return float(np.sqrt((np.diff(x, axis=-1) ** 2).mean() + (np.diff(x, axis=-2) ** 2).mean()))


def blob_count(frame: np.ndarray) -> int:
    """Digit blobs of a uint8 frame (H, W[, 1]): 8-connected components >= BLOB_THRESHOLD of >= MIN_BLOB_AREA px."""
    import cv2

    f = frame[..., 0] if frame.ndim == 3 else frame
    n, _, stats, _ = cv2.connectedComponentsWithStats((f >= BLOB_THRESHOLD).astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= MIN_BLOB_AREA).sum())


class BlockStats:
    """Per-clip statistics per block of BLOCK frames: mean intensity in [0, 1], mean and max blob count."""

    def __init__(self, batch: int):
        self.batch, self.t = batch, 0
        self.intensity: list[np.ndarray] = []  # per block: (B,)
        self.blobs: list[np.ndarray] = []
        self.max_blobs: list[np.ndarray] = []
        self._reset()

    def _reset(self) -> None:
        self._i, self._b, self._m = np.zeros(self.batch), np.zeros(self.batch), np.zeros(self.batch)

    def push(self, frames: np.ndarray) -> None:  # (B, H, W, C)
        counts = np.array([blob_count(f) for f in frames])
        self._i += frames.reshape(self.batch, -1).mean(1) / 255
        self._b += counts
        self._m = np.maximum(self._m, counts)
        self.t += 1
        if self.t % BLOCK == 0:
            self.intensity.append(self._i / BLOCK)
            self.blobs.append(self._b / BLOCK)
            self.max_blobs.append(self._m)
            self._reset()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (blocks, B) each
        return np.array(self.intensity), np.array(self.blobs), np.array(self.max_blobs)


def collapse_rule(real_intensity: np.ndarray, real_blobs: np.ndarray) -> dict:
    """Bounds from real clips' block statistics (see the module docstring)."""
    lo, hi = float(real_blobs.min()), float(real_blobs.max())
    return {"min_intensity": float(real_intensity.min()) / 2, "max_intensity": float(real_intensity.max()) * 2,
            "min_blobs": lo - 0.5, "max_blobs": hi + 0.5}


def collapsed(intensity: np.ndarray, blobs: np.ndarray, max_blobs: np.ndarray, rule: dict) -> np.ndarray:
    """(blocks, B) statistics -> (B,) bool: does the clip leave the rule's bounds?"""
    bad = (intensity < rule["min_intensity"]) | (intensity > rule["max_intensity"])
    bad |= (blobs < rule["min_blobs"]) | (blobs > rule["max_blobs"])
    one = max_blobs < 2
    lost = one[1:] & one[:-1] if len(one) > 1 else np.zeros_like(one[:0])
    return bad.any(axis=0) | (lost.any(axis=0) if len(lost) else False)


# ---------------------------------------------------------------- the protocols


@dataclass
class Settings:
    clips: int = 64  # continuation and consistency clips
    context: int = 10
    predict: int = 10
    consistency_frames: int = 32
    long_clips: int = 16
    long_frames: int = 1024
    seed: int = 0
    sampling: Sampling = field(default_factory=Sampling)  # the decoding measured (greedy runs change temperature)
    batch: int = 32
    tokenizer_clips: int = 200  # 0: skip the tokenizer table
    sweep: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)  # extra sampling temperatures for the consistency sweep
    guidance_sweep: tuple[float, ...] = (1.0, 5.0)  # extra guidance scales for the consistency sweep (1: off)
    reader_steps: int = 1200  # training steps of the digit reader that measures label fidelity (0: skip)
    identity_steps: int = 600  # training steps of the single-digit reader that counts identity switches (0: skip)
    dataset: str = "moving-mnist"  # the clips measured against: moving-mnist, shapes or folder
    data_path: str | None = None  # the folder of videos, for dataset "folder"

    def decoding(self, **changes) -> Sampling:
        """These settings' decoding, with some settings changed (another temperature or guidance)."""
        return dataclasses.replace(self.sampling, **changes)


@dataclass
class Data:
    """What a run measures against: the eval split of `dataset` at the model's size and colour."""

    dataset: str
    path: str | None
    description: str  # "held-out Moving MNIST clips (digits 4000-4999, eval-split seeds)"
    held_out: bool  # False: the clips come from data the model may have been trained on (said in the report)
    labelled: bool  # the clips' labels are given to the model
    digits: bool  # a Moving MNIST model (64x64, 1 channel): the digit measures apply
    notice: str = ""  # a folder's held-out files, or why none are

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def eval_dataset(model, dataset: str, path, frames: int, seed: int = 0, split: str = "eval"):
    """`dataset`'s `split` at the model's resolution and channels; ArvidError where its clips cannot match them."""
    extra = {"channels": model.channels} if dataset == "folder" else {}
    ds = make_dataset(dataset, frames=frames, size=model.resolution, split=split, seed=seed, path=path, **extra)
    if ds.channels != model.channels:
        H, W = model.resolution
        raise ArvidError(f"the model makes {W}x{H} frames with {model.channels} channel(s), but {dataset} clips have "
                         f"{ds.channels}: measure it on its own kind of data (--dataset shapes, moving-mnist, or folder "
                         "--data-path DIR)")
    return ds


def data_for(model, dataset: str = "moving-mnist", path=None) -> Data:
    """The `Data` a run on `model` measures against (checked now: a folder without videos fails here, not later)."""
    ds = eval_dataset(model, dataset, path, frames=1)
    labelled = _labelled(model, ds)
    digits = dataset == "moving-mnist" and model.resolution == (64, 64) and model.channels == 1
    return Data(dataset, None if path is None else str(path), ds.describe(), ds.is_held_out, labelled, digits,
                ds.notice() if hasattr(ds, "notice") else "")


def _real(model, st: Settings, frames: int, count: int, seed: int):
    """`count` clips (count, frames, H, W, C) of the settings' dataset, and their labels (count, k), or None where
    the model is not given labels."""
    ds = eval_dataset(model, st.dataset, st.data_path, frames, seed)
    clips = [ds[i] for i in range(count)]
    video = np.stack([c.video for c in clips])
    return video, (np.stack([c.labels for c in clips]) if _labelled(model, ds) else None)


def _labelled(model, ds) -> bool:
    cfg = model.generator.config
    return bool(cfg.num_classes and ds.labels_per_clip == cfg.labels_per_clip and ds.num_classes <= cfg.num_classes)


def _part(labels: np.ndarray | None, sl: slice) -> np.ndarray | None:
    return None if labels is None else labels[sl]


@torch.inference_mode()
def reconstruct(tok, video: np.ndarray) -> np.ndarray:
    """The tokenizer's reconstruction of uint8 clips (B, T, H, W, C), T = 1 + k·τ: encoded, decoded, uint8."""
    return tensor_to_video(tok.decode(tok.encode(video_to_tensor(video).to(tok.device))))


@torch.inference_mode()
def reconstruct_exact(tok, video: np.ndarray) -> np.ndarray:
    """A layered tokenizer's reconstruction of uint8 clips (B, T, H, W, C), any T >= 1: the last frame repeated to
    whole latent frames, the layers cut from the clip's own pixels of its reference frame (`exact_reference`, as
    `extend` cuts them), the copies dropped."""
    T, tau = video.shape[1], tok.temporal_factor
    padded = np.concatenate([video, np.repeat(video[:, -1:], -T % tau, axis=1)], axis=1)
    enc = tok.encoder_stream(len(video), exact_reference=True)
    codes = enc.push(video_to_tensor(padded).to(tok.device))
    return tensor_to_video(tok.decode(codes, reference=enc.reference))[:, :T]


def _batches(n: int, batch: int):
    for s in range(0, n, batch):
        yield slice(s, min(n, s + batch))


def continuation(model, st: Settings) -> dict:
    tau = model.temporal_factor
    video, labels = _real(model, st, st.context + st.predict, st.clips, st.seed)
    first = model.tokenizer.first_frames
    skip = (st.context - 1) % tau if first else 0  # tokenize the last 1 + k·τ given frames (layered: the model reads all)
    given, true = video[:, skip:st.context], video[:, st.context:]
    out = {"greedy": [], "sampled": [], "floor": []}
    for sl in _batches(st.clips, st.batch):
        for name, temp in (("greedy", 0.0), ("sampled", st.sampling.temperature)):
            frames = list(rollout(model, st.predict, st.decoding(temperature=temp), labels=_part(labels, sl),
                                  context=given[sl], seed=st.seed))
            out[name].append(np.stack(frames, axis=1))
        # the floor: the tokenizer's reconstruction of the real frames, from the same first frame on
        full = video[sl, skip:]
        if first:
            n = longest_prefix(full.shape[1], tau, first)
            rec = reconstruct(model.tokenizer, full[:, :n])
            floor = np.concatenate([rec, np.repeat(rec[:, -1:], full.shape[1] - n, axis=1)], axis=1)
        else:  # layered: every frame positioned (the last repeated to whole latent frames), the layers cut from
            # the clip's own pixels as extend cuts them (the reference chosen among the first τ of all 20 frames)
            floor = reconstruct_exact(model.tokenizer, full)
        out["floor"].append(floor[:, given.shape[1]:])
    preds = {k: np.concatenate(v) for k, v in out.items()}
    preds["copy last"] = np.repeat(video[:, st.context - 1:st.context], st.predict, axis=1)
    res = {name: {"mse": frame_mse(p, true).tolist(), "ssim": frame_ssim(p, true).tolist(),
                  "psnr": frame_psnr(p, true).tolist()} for name, p in preds.items()}
    for (name, r), p in zip(res.items(), preds.values()):
        r["mean_mse"], r["mean_ssim"] = float(np.mean(r["mse"])), float(np.mean(r["ssim"]))
        r["mean_psnr"] = psnr(p, true)
    return {"figures": res, "examples": {"given": video[:4, :st.context], "true": true[:4],
                                         **{k: preds[k][:4] for k in ("greedy", "sampled")}}}


def consistency(model, st: Settings) -> dict:
    """Warping error, motion and label fidelity of real clips, of their tokenizer reconstructions (what any
    generator of these tokens is rendered through), of generated clips, of the no-context ablation, and of
    generated clips at the sweeps' other temperatures and guidance scales."""
    size, tau = model.resolution[0], model.temporal_factor
    video, labels = _real(model, st, st.consistency_frames, st.clips, st.seed + 1)
    n = longest_prefix(video.shape[1], tau, model.tokenizer.first_frames)
    recon = np.concatenate([reconstruct(model.tokenizer, video[sl, :n]) for sl in _batches(st.clips, st.batch)])
    clips = {"real": video, "tokenizer reconstruction": recon}
    runs = [("generated", st.decoding(), False), ("no-context ablation", st.decoding(), True)]
    runs += [(f"generated, temperature {t:g}", st.decoding(temperature=t), False)
             for t in sorted(set(st.sweep)) if t != st.sampling.temperature]
    default_g = st.sampling.guidance
    runs += [(f"generated, guidance {g:g}", st.decoding(guidance=g), False)
             for g in sorted(set(st.guidance_sweep)) if g != default_g]
    for name, kw, ablate in runs:
        clips[name] = np.concatenate([np.stack(list(rollout(
            model, st.consistency_frames, kw, labels=_part(labels, sl), seed=st.seed + sl.start, no_context=ablate,
            batch=sl.stop - sl.start)), axis=1) for sl in _batches(st.clips, st.batch)])
    reader = None
    if st.reader_steps:
        reader = train_reader(size=size, steps=st.reader_steps, seed=st.seed)
    figures = {}
    for name, c in clips.items():
        flows = [_flows(x) for x in c]
        w = [warping_error(x, f) for x, f in zip(c, flows)]
        figures[name] = {"mean": float(np.mean(w)), "std": float(np.std(w)),
                         "motion": float(np.mean([motion(x) for x in c])),
                         "speed": float(np.mean([speed(x, flows=f) for x, f in zip(c, flows)])),
                         "sharpness": float(np.mean([sharpness(x) for x in c]))}
        if reader is not None and labels is not None:
            hits = label_hits(reader, c.reshape(-1, *c.shape[2:]), np.repeat(labels[:len(c)], c.shape[1], axis=0))
            figures[name]["labels"] = float(hits.mean())
    if st.identity_steps:
        reader_figures, per_set = _identity(clips, st)
        figures["identity_reader"] = reader_figures
        for name, ident in per_set.items():
            figures[name]["identity"] = ident
    temps = sorted({st.sampling.temperature, *st.sweep})
    figures["sweep"] = {"temperatures": temps,
                        "names": [_run_name(st, "temperature", t) for t in temps]}
    scales = sorted({default_g, *st.guidance_sweep})
    figures["guidance_sweep"] = {"scales": scales, "names": [_run_name(st, "guidance", g, default_g) for g in scales]}
    return {"figures": figures, "examples": {k: clips[k][:2] for k in ("real", "generated", "no-context ablation")}}


def _identity(clips: dict[str, np.ndarray], st: Settings) -> tuple[dict, dict]:
    """The identity reader's figures (its accuracy on isolated held-out digits), and the identity figures of each
    clip set (N, T, H, W, C) by name."""
    reader = identity_reader(st.identity_steps, st.seed)
    per_set = {name: summarize([clip_identity(reader, x) for x in c]) for name, c in clips.items()}
    return {"heldout_accuracy": heldout_accuracy(reader), "steps": st.identity_steps}, per_set


def _run_name(st: Settings, what: str, value: float, default: float | None = None) -> str:
    default = st.sampling.temperature if default is None else default
    return "generated" if value == default else f"generated, {what} {value:g}"


def long_clips(model, st: Settings, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    real, _ = _real(model, st, min(st.long_frames, 256), max(st.long_clips, 16), st.seed + 2)
    _, labels = _real(model, st, 1, st.long_clips, st.seed + 3)
    rs = BlockStats(len(real))
    for t in range(real.shape[1]):
        rs.push(real[:, t])
    real_stats = rs.arrays()
    rule = collapse_rule(real_stats[0], real_stats[1])
    real_flagged = int(collapsed(*real_stats, rule).sum())
    gs, samples = BlockStats(st.long_clips), []
    bar = tqdm(total=st.long_frames, unit="frame", desc="long clips", disable=not progress)
    for t, frames in enumerate(rollout(model, st.long_frames, st.decoding(), labels=labels, seed=st.seed + 4,
                                       batch=st.long_clips)):
        gs.push(frames)
        if t % BLOCK == 0:
            samples.append(frames[:2])
        bar.update(1)
    bar.close()
    gen_i, gen_b, gen_m = gs.arrays()
    bad = collapsed(gen_i, gen_b, gen_m, rule)
    return {"figures": {"clips": st.long_clips, "frames": st.long_frames, "rule": rule,
                        "collapses": int(bad.sum()), "collapsed_clips": np.flatnonzero(bad).tolist(),
                        "real_clips": len(real), "real_frames": real.shape[1], "real_flagged": real_flagged,
                        "real_intensity": real_stats[0].mean(1).tolist(), "real_blobs": real_stats[1].mean(1).tolist(),
                        "real_intensity_range": [float(real_stats[0].min()), float(real_stats[0].max())],
                        "real_blobs_range": [float(real_stats[1].min()), float(real_stats[1].max())],
                        "intensity": gen_i.T.tolist(), "blobs": gen_b.T.tolist()},
            "examples": {"long": np.stack(samples, axis=1)}}  # (2, blocks, H, W, C)


# ---------------------------------------------------------------- the report


@dataclass
class Report:
    settings: Settings
    figures: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    command: str = ""
    data: Data | None = None  # the clips measured against (None: held-out Moving MNIST, labelled)
    size: tuple[int, int, int] = (64, 64, 1)  # the model's frames: H, W, C

    def checks(self) -> list[tuple[str, bool, str]]:
        out = []
        c = self.figures.get("continuation")
        if c:
            g, b = c["greedy"]["mean_mse"], c["copy last"]["mean_mse"]
            out.append(("greedy continuation MSE at least 30% below copy-last", g <= 0.7 * b,
                        f"{g:.1f} vs {b:.1f} ({100 * (1 - g / b):.0f}% lower)"))
        w = self.figures.get("consistency")
        if w:
            r, g, a = w["real"]["mean"], w["generated"]["mean"], w["no-context ablation"]["mean"]
            out.append(("warping error within 1.5x of real clips (either way)", r / 1.5 <= g <= 1.5 * r,
                        f"{g:.4f} vs real {r:.4f} ({g / r:.2f}x)"))
            out.append(("warping error clearly below the no-context ablation", g <= 0.8 * a,
                        f"{g:.4f} vs ablation {a:.4f} ({g / a:.2f}x; 'clearly' taken as at most 0.8x)"))
            if "tokenizer reconstruction" in w:
                t = w["tokenizer reconstruction"]["mean"]
                out.append(("diagnostic, not a target: tokenizer reconstructions of real clips within 1.5x of real",
                            t <= 1.5 * r, f"{t:.4f} vs real {r:.4f} ({t / r:.2f}x): generated clips are rendered by this decoder"))
        lc = self.figures.get("long")
        if lc:
            out.append((f"at most 1 collapse in {lc['clips']} long clips", lc["collapses"] <= 1 and lc["clips"] >= 16,
                        f"{lc['collapses']} of {lc['clips']} clips of {lc['frames']} frames"))
        return out

    def markdown(self, plots: list[str]) -> str:
        st, data = self.settings, self.data
        H, W, C = self.size
        digits = data is None or data.digits
        lines = ["# Generation quality", "", f"Command: `{self.command}`", "",
                 f"Hardware: {platform.machine()}, {torch.get_num_threads()} torch threads, "
                 f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}. {_data_text(data)}", ""]
        lines += ["## Acceptance checks", "", "| check | result | figures |", "| --- | --- | --- |"]
        lines += [f"| {n} | {'pass' if ok else '**fail**'} | {d} |" for n, ok, d in self.checks()]
        c = self.figures.get("continuation")
        if c:
            lines += ["", f"## Continuation ({st.context} frames given, {st.predict} predicted, {st.clips} clips)", "",
                      f"Per-frame MSE: sum over the {W}x{H}{f'x{C}' if C > 1 else ''} frame of squared errors, pixels "
                      "in [0, 1]" + (". For scale, on the standard test set: " + ", ".join(
                          f"{k} {v}" for k, v in PUBLISHED_MSE.items()) if digits else "") + ". PSNR: of the mean "
                      "squared error over every predicted frame of every clip.", "",
                      "| decoding | mean MSE | PSNR (dB) | mean SSIM | MSE per frame |", "| --- | --- | --- | --- | --- |"]
            for name, r in c.items():
                lines.append(f"| {name} | {r['mean_mse']:.1f} | {r.get('mean_psnr', float('nan')):.2f} | "
                             f"{r['mean_ssim']:.3f} | " + " ".join(f"{v:.0f}" for v in r["mse"]) + " |")
            lines += ["", "`floor` is the tokenizer's reconstruction of the true frames: no generator of these "
                      "tokens can do better on average. " + _decoding_text(st, data) + " Greedy decoding takes the same "
                      "guidance and top-k/top-p (which cannot change the most likely token)."]
        w = self.figures.get("consistency")
        if w:
            bright = "digits'" if digits else "bright"
            lines += ["", f"## Temporal consistency ({st.clips} clips of {st.consistency_frames} frames)", "",
                      "Warping error: mean |warp(frame t-1 -> t) - frame t| (pixels in [0, 1]) along Farneback flow. "
                      "The ablation samples every latent frame on its own (as the first frame of a new clip).", "",
                      "Motion: mean |frame t - frame t-1|; a clip that moves less has less to warp, so a low warping "
                      "error counts only with real-like motion. Motion also counts flicker, so it falls when a clip "
                      "only flickers less; speed does not: the mean optical-flow length (pixels per frame) on the "
                      f"{bright} pixels (brighter than 64), how far they move. Sharpness: the "
                      "root mean square difference between neighbouring pixels; a blurred clip also has less to warp "
                      "wrongly, so a low warping error counts only with real-like sharpness. The tokenizer "
                      "reconstruction is the real clips encoded and decoded: every generated clip is rendered by that "
                      "decoder." + ("" if C == 1 else " Colour clips are measured on their luma."), ""]
            shown = any("labels" in v for v in w.values() if isinstance(v, dict))
            if shown:
                lines += ["Labels shown: the fraction of frames in which a digit reader (a small CNN trained on frames "
                          "of the train split) finds exactly the clip's two digit classes. Its score on real frames is "
                          "the ceiling of the measure (overlapping digits hide each other).", ""]
            lines += [_decoding_text(st, data), "",
                      "| clips | warping error (mean ± std over clips) | x real | motion | x real | speed (px/frame) "
                      "| x real | sharpness x real |" + (" labels shown |" if shown else ""),
                      "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if shown else "")]
            r = w["real"]
            lines += [f"| {k} | {v['mean']:.4f} ± {v['std']:.4f} | {v['mean'] / r['mean']:.2f} | {v['motion']:.4f} | "
                      f"{v['motion'] / r['motion']:.2f} | {v['speed']:.2f} | {v['speed'] / max(r['speed'], 1e-9):.2f} | "
                      f"{v['sharpness'] / max(r['sharpness'], 1e-9):.2f} |"
                      + (f" {format(v['labels'], '.2f') if 'labels' in v else ''} |" if shown else "")
                      for k, v in w.items() if "mean" in v]
            if "identity_reader" in w:
                lines += _identity_lines(w, st)
        lc = self.figures.get("long")
        if lc:
            rule = lc["rule"]
            lines += ["", f"## Long clips ({lc['clips']} clips of {lc['frames']} frames)", "",
                      f"Collapses: **{lc['collapses']} of {lc['clips']}** (clips {lc['collapsed_clips'] or 'none'}). "
                      f"Rule, from {lc['real_clips']} real clips of {lc['real_frames']} frames in {BLOCK}-frame blocks: "
                      f"block mean intensity in [{rule['min_intensity']:.4f}, {rule['max_intensity']:.4f}], block mean "
                      f"blob count in [{rule['min_blobs']:.2f}, {rule['max_blobs']:.2f}], and never two blocks in a row "
                      f"without a frame of two blobs (blobs: components >= {BLOB_THRESHOLD} of at least "
                      f"{MIN_BLOB_AREA} px). The same rule flags {lc['real_flagged']} of the {lc['real_clips']} real clips."]
        t = self.figures.get("tokenizer")
        if t:
            lines += ["", f"## Tokenizer ({t['frames']}-frame {t.get('source', 'held-out clips')})", "", "```",
                      t["table"], "```"]
        lines += ["", "## Time", ""] + [f"- {k}: {v:.0f} s" for k, v in self.seconds.items()]
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
        return "\n".join(lines) + "\n"


def _identity_lines(w: dict, st: Settings) -> list[str]:
    """The report's identity section: each clip set of the consistency table against the real clips."""
    r = w["real"]["identity"]

    def ratio(v: float, ref: float) -> str:
        return f"{v / ref:.2f}" if ref > 0 else "-"

    lines = ["", f"## Identity ({st.clips} clips of {st.consistency_frames} frames, the clips above)", "",
             f"Every digit is found in every frame (connected components of pixels >= {THRESHOLD}; one too large "
             "to be one digit is not legible), cropped 28x28, read by a single-digit reader (a small CNN trained on "
             "train digits 0-3999) and tracked from frame to frame (nearest centroid, one to one). The reader reads "
             f"{w['identity_reader']['heldout_accuracy']:.1%} of the isolated held-out digits 4000-4999 right. An "
             f"identity switch: a digit read confidently (probability >= {CONFIDENT:g}) as one class and, at its "
             "next confident read on the same track, as another. Tracked steps: the pairs of consecutive confident "
             f"reads. Confident share: confident reads / {EXPECTED} digits per frame (digits that overlap hide each "
             "other in real clips too).", "",
             "| clips | identity switches per 100 tracked steps | x real | switches / tracked steps "
             "| confident share | x real |", "| --- | --- | --- | --- | --- | --- |"]
    for k, v in w.items():
        if "identity" in v:
            i = v["identity"]
            lines.append(f"| {k} | {i['switches_per_100']:.2f} | {ratio(i['switches_per_100'], r['switches_per_100'])}"
                         f" | {i['switches']} / {i['tracked_steps']} | {i['confident_share']:.3f} | "
                         f"{ratio(i['confident_share'], r['confident_share'])} |")
    return lines


def _decoding_text(st: Settings, data: Data | None = None) -> str:
    s = st.sampling
    shown = ", ".join(f"{name.replace('_', '-')} {getattr(s, name):g}" if s.is_on(name) else f"{name.replace('_', '-')} off"
                      for name in Sampling.settings())
    if data is not None and not data.labelled:
        return f"Sampling: {shown} (no labels are given)."
    return f"Sampling: {shown} (the labels are given; guidance is classifier-free guidance)."


def _data_text(data: Data | None) -> str:
    """The report's line on the clips measured against."""
    if data is None or data.dataset == "moving-mnist" and data.labelled:
        return "Held-out Moving MNIST clips (digits 4000-4999, eval-split seeds); the clips' digit labels are given to the model."
    text = data.description[:1].upper() + data.description[1:]
    text += "; the clips' labels are given to the model." if data.labelled else "; no labels are given to the model."
    if data.notice:
        text += f" {data.notice[:1].upper() + data.notice[1:]}."
    if not data.digits:
        text += (" The digit measures (labels shown, identity, the long-clip collapse rule) are for Moving MNIST "
                 "models (64x64, 1 channel) and are not run.")
    return text


def fitted_settings(st: Settings, data: Data) -> Settings:
    """The settings as run on `data`: the digit measures off where they do not apply (not a Moving MNIST model),
    the guidance sweep off where no labels are given (guidance needs them)."""
    changes = {}
    if not data.digits:
        changes.update(reader_steps=0, identity_steps=0, long_clips=0)
    if not data.labelled:
        changes.update(guidance_sweep=())
    return dataclasses.replace(st, **changes)


def evaluate_generation(model, st: Settings, command: str = "", progress: bool = True,
                        data: Data | None = None) -> Report:
    """Measure `model` on `st.dataset` (see the module docstring); `data`: what `data_for` says of it (found here
    when not given)."""
    data = data or data_for(model, st.dataset, st.data_path)
    st = fitted_settings(st, data)
    rep = Report(st, command=command, data=data, size=(*model.resolution, model.channels))
    torch.manual_seed(st.seed)
    for name, fn in (("continuation", continuation), ("consistency", consistency), ("long", long_clips)):
        if name == "long" and st.long_clips == 0:
            continue
        t0 = time.perf_counter()
        if progress:
            print(f"arvid: {name} ...", flush=True)
        out = fn(model, st, progress) if name == "long" else fn(model, st)
        rep.figures[name], rep.seconds[name] = out["figures"], time.perf_counter() - t0
        rep.examples.update({f"{name}/{k}": v for k, v in out["examples"].items()})
    if st.tokenizer_clips:
        t0 = time.perf_counter()
        ds = eval_dataset(model, st.dataset, st.data_path, frames=longest_prefix(17, model.temporal_factor, model.tokenizer.first_frames) or model.temporal_factor)
        tr = evaluate_tokenizer(model.tokenizer, ds, clips=st.tokenizer_clips, progress=progress)
        rep.figures["tokenizer"] = {**tr.to_dict(), "table": tr.table()}
        rep.seconds["tokenizer"] = time.perf_counter() - t0
    return rep


def write_report(rep: Report, out: Path) -> list[Path]:
    """report.md, figures.json and PNG plots and contact sheets into `out` (each written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []

    def save(fig, name):
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        plots.append(name)

    c = rep.figures.get("continuation")
    if c:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for name, r in c.items():
            x = np.arange(1, len(r["mse"]) + 1)
            ax[0].plot(x, r["mse"], marker="o", label=name)
            ax[1].plot(x, r["ssim"], marker="o", label=name)
        ax[0].set(xlabel="predicted frame", ylabel="MSE per frame (sum, [0,1] pixels)", title="continuation MSE")
        ax[1].set(xlabel="predicted frame", ylabel="SSIM", title="continuation SSIM")
        ax[0].legend()
        save(fig, "continuation.png")
    w = rep.figures.get("consistency")
    if w:
        fig, ax = plt.subplots(1, 3, figsize=(16, 3.6))
        names = ["real", "tokenizer reconstruction", "generated", "no-context ablation"]
        names = [k for k in names if k in w]
        ax[0].bar([k.replace(" ", "\n", 1) for k in names], [w[k]["mean"] for k in names],
                  yerr=[w[k]["std"] for k in names], color=["gray", "C2", "C0", "C3"][:len(names)])
        ax[0].axhline(1.5 * w["real"]["mean"], color="k", ls=":", lw=1, label="1.5x real")
        ax[0].set(ylabel="warping error", title="temporal consistency (lower: more consistent)")
        ax[0].legend(fontsize=8)
        sw, gs = w.get("sweep"), w.get("guidance_sweep")
        _sweep_panel(ax[1], w, sw and sw["temperatures"], sw and sw["names"], "sampling temperature (0: greedy)",
                     "generated clips by temperature")
        _sweep_panel(ax[2], w, gs and gs["scales"], gs and gs["names"], "classifier-free guidance scale (1: off)",
                     "generated clips by guidance")
        save(fig, "consistency.png")
    lc = rep.figures.get("long")
    if lc:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        x = (np.arange(len(lc["intensity"][0])) + 0.5) * BLOCK
        for i, (vi, vb) in enumerate(zip(lc["intensity"], lc["blobs"])):
            bad = i in lc["collapsed_clips"]
            kw = dict(color="C3" if bad else "C0", alpha=0.9 if bad else 0.35, lw=1)
            ax[0].plot(x, vi, **kw)
            ax[1].plot(x, vb, **kw)
        rule = lc["rule"]
        for a, key, lo, hi in ((ax[0], "real_intensity_range", "min_intensity", "max_intensity"),
                               (ax[1], "real_blobs_range", "min_blobs", "max_blobs")):
            a.axhspan(*lc[key], color="gray", alpha=0.25, label="real clips (range of block means)")
            a.axhline(rule[lo], color="k", ls=":", lw=1)
            a.axhline(rule[hi], color="k", ls=":", lw=1, label="collapse bounds")
        ax[0].set(xlabel="frame", ylabel="mean intensity", title=f"{lc['clips']} long clips: intensity per block")
        ax[1].set(xlabel="frame", ylabel="digit blobs", title="blob count per block (red: collapsed)")
        ax[1].legend(fontsize=8)
        save(fig, "long_clips.png")
    ex = rep.examples
    if "continuation/greedy" in ex:
        rows = []
        for i in range(min(2, len(ex["continuation/greedy"]))):
            rows += [(f"clip {i}: given", ex["continuation/given"][i]), ("true", ex["continuation/true"][i]),
                     ("greedy", ex["continuation/greedy"][i]), ("sampled", ex["continuation/sampled"][i])]
        _sheet(rows, out / "continuation_sheet.png")
        plots.append("continuation_sheet.png")
    if "long/long" in ex:
        _sheet([(f"long clip {i}, every {BLOCK}th frame (tile n: frame {BLOCK}·n)", c)
                for i, c in enumerate(ex["long/long"])], out / "long_sheet.png")
        plots.append("long_sheet.png")
    figures = {k: {kk: vv for kk, vv in v.items() if kk != "table"} for k, v in rep.figures.items()}
    atomic_write_text(out / "figures.json", json.dumps({"settings": dataclasses.asdict(rep.settings),
                                                        "data": rep.data.to_dict() if rep.data else None,
                                                        "figures": figures, "seconds": rep.seconds,
                                                        "checks": [{"check": n, "pass": ok, "figures": d}
                                                                   for n, ok, d in rep.checks()],
                                                        "command": rep.command}, indent=1) + "\n")
    atomic_write_text(out / "report.md", rep.markdown(plots))
    return [out / "report.md", out / "figures.json", *(out / p for p in plots)]


def _sweep_panel(ax, w: dict, xs: list | None, names: list | None, xlabel: str, title: str) -> None:
    """Warping error, motion, speed, sharpness and labels shown of the sweep's runs, each as a ratio to real clips."""
    if not xs or len(xs) < 2:
        ax.axis("off")
        return
    r = w["real"]
    ax.plot(xs, [w[k]["mean"] / r["mean"] for k in names], marker="o", label="warping error / real")
    ax.plot(xs, [w[k]["motion"] / r["motion"] for k in names], marker="s", label="motion / real")
    if r.get("speed"):
        ax.plot(xs, [w[k]["speed"] / r["speed"] for k in names], marker="v", label="speed / real")
    if r.get("sharpness"):
        ax.plot(xs, [w[k]["sharpness"] / r["sharpness"] for k in names], marker="d", label="sharpness / real")
    if r.get("labels"):
        ax.plot(xs, [w[k]["labels"] / r["labels"] for k in names], marker="^", label="labels shown / real")
    ax.axhline(1.5, color="k", ls=":", lw=1)
    ax.axhline(1.0, color="gray", lw=1)
    ax.set(xlabel=xlabel, ylabel="ratio to real clips", title=title)
    ax.legend(fontsize=8)


def _sheet(rows: list[tuple[str, np.ndarray]], path: Path) -> None:
    from PIL import Image

    images = [np.asarray(contact_sheet(frames, cols=frames.shape[0], scale=1.0, title=name)) for name, frames in rows]
    width = max(im.shape[1] for im in images)
    stacked = np.concatenate([np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0))) for im in images])
    with atomic_path(path) as tmp:
        Image.fromarray(stacked).save(tmp, format="PNG")


__all__ = ["Data", "Settings", "Report", "data_for", "evaluate_generation", "frame_psnr", "write_report", "warping_error", "motion", "speed", "sharpness", "blob_count", "BlockStats",
           "collapse_rule", "collapsed", "frame_mse", "rollout"]
