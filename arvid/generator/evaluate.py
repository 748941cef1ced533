"""Generation evaluation (`arvid eval generation`): what a model makes, measured on held-out clips.

    from arvid.generator.evaluate import EvalSettings, evaluate_generation
    figures = evaluate_generation(Arvid.from_pretrained(), "report/", EvalSettings())

Every clip comes from the eval split of Moving MNIST (digits 4000-4999, a random stream training
never uses), at the model's resolution. Each protocol is a function returning plain figures (and a
few example frames for the contact sheets); `write_report` turns them into report.md, figures.json
and PNG plots. All clips of a protocol go through the model as one batch.

Continuation: the first `context` frames of each clip are tokenized (`Arvid.prepare`) and the next
`predict` frames generated after those tokens, with the clip's digit labels given to a conditional
model. Per-frame MSE is the sum over the frame of squared errors, pixels in [0, 1] (the standard
Moving MNIST figure), averaged over clips; SSIM is `arvid.tokenizer.evaluate.ssim` per frame,
averaged over clips. Rows: greedy decoding, sampled decoding, "copy the last given frame", and the
tokenizer's own reconstruction of the true future (tokenize and decode the real frames): the floor
set by the tokenizer, which no generator reading its tokens can beat on average.

Temporal consistency (warping error): for consecutive frames f_{t-1}, f_t (uint8, gray), the
backward flow u from f_t to f_{t-1} is OpenCV's Farneback flow, `calcOpticalFlowFarneback(f_t,
f_{t-1}, FARNEBACK)`, so that f_t(y, x) ≈ f_{t-1}(y + u_y, x + u_x); f_{t-1} is warped onto f_t with
`cv2.remap` (bilinear, border replicated) and the error is mean |warp(f_{t-1}) - f_t| over pixels,
pixels in [0, 1]. A clip's warping error is the mean over its T-1 pairs; tables give the mean over
clips. The frame difference mean |f_t - f_{t-1}| (no warping) is given beside it: a clip that does
not move has both near 0, so "within 1.5x of real" is checked on both sides. Compared: real clips,
generated clips of the same length (sampled, the real clips' labels), and an ablation with the same
weights and a one-frame window and no sinks (`no_context_generator`).

Long clips: per frame, the mean intensity (pixels in [0, 1]) and the number of digit blobs: 8-connected
components of the frame thresholded at pixel >= THRESHOLD (half the range), ignoring components
smaller than MIN_AREA_64 pixels at 64x64 (scaled with the frame area; real digit pieces are >= 31
pixels in 99% of cases). Per block of BLOCK frames: the mean of both and the largest blob count. The
plausible range comes from real clips of the same length (`CollapseRule.from_real`), and a clip
collapses when any block is
  blank      mean intensity below half the lowest real block mean,
  saturated  mean intensity above twice the highest real block mean,
  off count  mean blob count outside [lowest real - 0.5, highest real + 0.5] (digits multiply or melt),
  lost digit no frame with 2+ blobs in LOST_BLOCKS consecutive blocks (real digits overlap for a
             whole 64-frame block about once in 170 blocks, never for two in a row in 64 clips).
The same rule is applied to held-out real clips as a check of its false-alarm rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from arvid.errors import ArvidError

THRESHOLD = 128  # pixel value (0-255) at or above which a pixel belongs to a digit
MIN_AREA_64 = 16  # smallest blob that counts, in pixels of a 64x64 frame
BLOCK = 64  # frames per block of the long-clip statistics
LOST_BLOCKS = 2  # consecutive blocks without two separate blobs that count as a lost digit
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
PUBLISHED_MSE = {"ConvLSTM": 103.3, "PredRNN": 56.8, "SimVP": 23.8}  # standard test set, per-frame MSE
EXAMPLES = 4  # clips shown in the continuation contact sheet


@dataclass
class EvalSettings:
    """What `evaluate_generation` runs; the CLI flags map onto these fields."""

    clips: int = 100  # continuation and consistency clips
    context: int = 10  # frames given
    predict: int = 10  # frames predicted
    consistency_frames: int = 20  # length of the clips compared for temporal consistency
    long_clips: int = 16
    long_frames: int = 1024
    block: int = BLOCK
    real_long_clips: int = 32  # real clips that define the plausible range of the long-clip statistics
    seed: int = 0  # dataset seed (eval split) and sampling seed
    temperature: float = 1.0  # sampled decoding (greedy is always run too)
    tokenizer_clips: int = 100
    h264: bool = True  # compare the tokenizer with H.264
    skip_tokenizer: bool = False

    @classmethod
    def quick(cls, **overrides) -> "EvalSettings":
        """Small sizes for a smoke run: minutes on a CPU, figures too noisy to judge a model by."""
        base = dict(clips=8, consistency_frames=12, long_clips=4, long_frames=128, block=32, real_long_clips=8,
                    tokenizer_clips=4, h264=False)
        return cls(**{**base, **overrides})

    def check(self) -> None:
        positive = ("clips", "context", "predict", "long_clips", "long_frames", "block", "real_long_clips",
                    "tokenizer_clips")
        bad = [f"{n}={getattr(self, n)}" for n in positive if not getattr(self, n) >= 1]
        if not self.consistency_frames >= 2:
            bad.append(f"consistency_frames={self.consistency_frames} (at least 2: warping needs a pair)")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            bad.append(f"temperature={self.temperature} (sampled decoding needs a finite temperature > 0)")
        if bad:
            raise ArvidError("invalid evaluation settings: " + ", ".join(bad) + " (counts must be at least 1)")


# ---------------------------------------------------------------- metrics on uint8 frames


def frame_mse(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame MSE (B, T): sum over each frame of squared errors, pixels in [0, 1]; inputs (B, T, H, W, C)."""
    d = truth.astype(np.float64) / 255.0 - pred.astype(np.float64) / 255.0
    return (d * d).sum(axis=(2, 3, 4))


def frame_ssim(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """SSIM per frame (T,), averaged over the B clips of (B, T, H, W, C)."""
    from arvid.tokenizer.evaluate import ssim

    return np.array([ssim(truth[:, t], pred[:, t]) for t in range(truth.shape[1])])


def gray(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (H, W)."""
    return frame[..., 0] if frame.shape[-1] == 1 else frame.mean(-1).round().astype(np.uint8)


def farneback_flow(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Backward flow (H, W, 2) float32 (x, y) from gray uint8 `cur` to `prev`: cur(p) ≈ prev(p + flow(p))."""
    import cv2

    return cv2.calcOpticalFlowFarneback(cur, prev, None, **FARNEBACK)


def warp(prev: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`prev` (H, W) sampled at p + flow(p): the previous frame moved onto the current one."""
    import cv2

    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(prev, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warping_error(clip: np.ndarray, flow_fn: Callable = farneback_flow) -> float:
    """Mean over consecutive pairs of mean |warp(f_{t-1}) - f_t|, pixels in [0, 1]; clip uint8 (T, H, W, C)."""
    if len(clip) < 2:
        raise ArvidError(f"the warping error needs at least 2 frames, got {len(clip)}")
    errors = []
    for a, b in zip(clip[:-1], clip[1:]):
        prev, cur = gray(a), gray(b)
        moved = warp(prev.astype(np.float32), flow_fn(cur, prev))
        errors.append(np.abs(moved - cur.astype(np.float32)).mean() / 255.0)
    return float(np.mean(errors))


def frame_difference(clip: np.ndarray) -> float:
    """Mean |f_t - f_{t-1}| over pairs and pixels, pixels in [0, 1]: the error with zero flow."""
    x = clip.astype(np.float32) / 255.0
    return float(np.abs(x[1:] - x[:-1]).mean())


def min_area(height: int, width: int) -> int:
    return max(1, round(MIN_AREA_64 * height * width / 64**2))


def blob_count(frame: np.ndarray, threshold: int = THRESHOLD, smallest: int | None = None) -> int:
    """Digit blobs in uint8 (H, W, C): 8-connected components of pixels >= threshold, specks ignored."""
    import cv2

    g = gray(frame)
    smallest = min_area(*g.shape) if smallest is None else smallest
    _, _, stats, _ = cv2.connectedComponentsWithStats((g >= threshold).astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= smallest).sum())  # row 0 is the background


def frame_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity in [0, 1] and blob count of each frame of uint8 (N, H, W, C): two (N,) arrays."""
    intensity = frames.reshape(len(frames), -1).mean(1) / 255.0
    return intensity, np.array([blob_count(f) for f in frames])


def block_stats(intensity: np.ndarray, blobs: np.ndarray, block: int) -> dict[str, np.ndarray]:
    """Per-frame statistics (..., T) to per-block ones (..., n_blocks); a last partial block counts."""
    n = math.ceil(intensity.shape[-1] / block)

    def per_block(x, fn):
        return np.stack([fn(x[..., i * block:(i + 1) * block], axis=-1) for i in range(n)], axis=-1)

    return {"intensity": per_block(intensity, np.mean), "blobs": per_block(blobs.astype(np.float64), np.mean),
            "max_blobs": per_block(blobs, np.max)}


def clip_block_stats(clip: np.ndarray, block: int = BLOCK) -> dict[str, np.ndarray]:
    """Per-block statistics of one uint8 clip (T, H, W, C)."""
    return block_stats(*frame_stats(clip), block)


@dataclass(frozen=True)
class CollapseRule:
    """The plausible range of per-block statistics, from real clips (see the module docstring)."""

    min_intensity: float  # lowest real block mean intensity
    max_intensity: float
    min_blobs: float  # lowest real block mean blob count
    max_blobs: float
    margin: float = 0.5  # blobs
    lost_blocks: int = LOST_BLOCKS

    @classmethod
    def from_real(cls, stats: dict[str, np.ndarray]) -> "CollapseRule":
        """From `block_stats` of real clips, arrays (R, n_blocks)."""
        i, b = stats["intensity"], stats["blobs"]
        return cls(float(i.min()), float(i.max()), float(b.min()), float(b.max()))

    @property
    def blob_range(self) -> tuple[float, float]:
        return self.min_blobs - self.margin, self.max_blobs + self.margin

    def reasons(self, intensity: np.ndarray, blobs: np.ndarray, max_blobs: np.ndarray) -> list[str]:
        """Why one clip collapsed, from its per-block statistics (n_blocks,) each; [] if it did not."""
        lo, hi = self.blob_range
        out = []
        for k, (i, b) in enumerate(zip(intensity, blobs)):
            if i < 0.5 * self.min_intensity:
                out.append(f"block {k}: blank (mean intensity {i:.4f})")
            elif i > 2 * self.max_intensity:
                out.append(f"block {k}: saturated (mean intensity {i:.4f})")
            elif not lo <= b <= hi:
                out.append(f"block {k}: {b:.2f} blobs per frame, outside [{lo:.2f}, {hi:.2f}]")
        apart = np.asarray(max_blobs) >= 2
        for k in range(len(apart) - self.lost_blocks + 1):
            if not apart[k:k + self.lost_blocks].any():
                out.append(f"blocks {k}-{k + self.lost_blocks - 1}: never two blobs apart (a digit lost)")
                break
        return out


# ---------------------------------------------------------------- running the model


def eval_dataset(model, frames: int, seed: int):
    """Moving MNIST, eval split (held-out digits and motion), at the model's resolution."""
    from arvid.data import make_dataset

    if model.channels != 1:
        raise ArvidError(f"the generation evaluation uses Moving MNIST (grayscale); this model makes "
                         f"{model.channels}-channel video")
    return make_dataset("moving-mnist", frames=frames, size=model.resolution, split="eval", seed=seed)


def model_labels(model, labels: np.ndarray) -> list | None:
    """The clips' labels (B, k) for a conditional model with k labels per clip, else None."""
    cfg = model.generator.config
    if cfg.conditional and labels.ndim == 2 and labels.shape[1] == cfg.labels_per_clip:
        return labels.tolist()
    return None


def prepare_batch(model, videos: np.ndarray):
    """`Arvid.prepare` of each clip of uint8 (B, T, H, W, C), the contexts stacked: a batch to continue."""
    from arvid.pipeline import Prepared

    contexts = [model.prepare(v).context for v in videos]  # (1, t, h, w) each
    return Prepared(frames=videos, context=torch.cat(contexts))


def stream_frames(model, num_frames: int, *, labels, seed: int, temperature: float, batch: int,
                  prepared=None) -> Iterator[np.ndarray]:
    """Frames uint8 (B, H, W, C) of a batch: new clips, or continuations of `prepared` (`prepare_batch`)."""
    from arvid.pipeline import SamplingOptions

    opts = SamplingOptions(seed=seed, temperature=temperature, labels=labels, batch=batch)
    with torch.inference_mode():
        yield from model._stream(num_frames, prepared, opts)


def collect(frames: Iterator[np.ndarray], total: int, desc: str, progress: bool) -> np.ndarray:
    """Stack a stream of (B, H, W, C) frames to (B, T, H, W, C), with a progress bar."""
    from tqdm import tqdm

    return np.stack(list(tqdm(frames, total=total, desc=desc, unit="frame", disable=not progress,
                              leave=False)), axis=1)


def reconstruct_future(model, videos: np.ndarray, context: int, predict: int, chunk: int = 16) -> np.ndarray:
    """The tokenizer's round trip of frames context .. context+predict-1 of (B, T, H, W, C).

    The frames tokenized are the ones the generator's tokens stand for: from the first frame
    `prepare` keeps (the last 1 + k·τ given frames) to the end of the last predicted latent frame.
    """
    from arvid.tokenizer import tensor_to_video, video_to_tensor

    tau = model.temporal_factor
    skip = (context - 1) % tau
    end = context + math.ceil(predict / tau) * tau
    out = []
    with torch.inference_mode():
        for i in range(0, len(videos), chunk):
            x = video_to_tensor(videos[i:i + chunk, skip:end]).to(model.device)
            out.append(tensor_to_video(model.tokenizer.decode(model.tokenizer.encode(x))))
    return np.concatenate(out)[:, context - skip:context - skip + predict]


def no_context_generator(generator):
    """The same weights with a one-frame window and no sinks (the ablation of temporal context).

    The window counts slots: a slot sees the F slots before it, so besides its own frame it reads
    the end of the previous latent frame, and through n_layer layers at most n_layer·F slots back.
    """
    from arvid.generator import Generator

    cfg = replace(generator.config, window_frames=1, sink_frames=0)
    ablated = Generator(cfg)
    ablated.load_state_dict(generator.state_dict())
    p = next(generator.parameters())
    return ablated.to(device=p.device, dtype=p.dtype).eval()


# ---------------------------------------------------------------- the protocols


def continuation(model, *, clips: int, context: int, predict: int, seed: int = 0, temperature: float = 1.0,
                 progress: bool = False) -> tuple[dict, dict]:
    """Given `context` frames, predict `predict`: figures and example clips (given, true, greedy, sampled)."""
    tau = model.temporal_factor
    ds = eval_dataset(model, context + math.ceil(predict / tau) * tau, seed)
    videos, labels = ds.batch(range(clips))  # (B, T, H, W, C), (B, k)
    given, truth = videos[:, :context], videos[:, context:context + predict]
    prepared = prepare_batch(model, given)
    labels = model_labels(model, labels)
    preds = {}
    for name, temp in (("greedy", 0.0), ("sampled", temperature)):
        frames = stream_frames(model, predict, labels=labels, seed=seed, temperature=temp, batch=clips,
                               prepared=prepared)
        preds[name] = collect(frames, predict, f"continuation ({name})", progress)
    preds["copy last frame"] = np.repeat(given[:, -1:], predict, axis=1)
    preds["tokenizer floor"] = reconstruct_future(model, videos, context, predict)
    rows = {}
    for name, pred in preds.items():
        mse = frame_mse(truth, pred).mean(0)  # (predict,)
        ssim = frame_ssim(truth, pred)
        rows[name] = {"mse": float(mse.mean()), "ssim": float(ssim.mean()), "mse_per_frame": mse.tolist(),
                      "ssim_per_frame": ssim.tolist()}
    figures = {"clips": clips, "context": context, "predict": predict, "temperature": temperature,
               "labels_given": labels is not None, "rows": rows, "published_mse": PUBLISHED_MSE}
    n = min(EXAMPLES, clips)
    examples = {"given": given[:n], "true": truth[:n], "greedy": preds["greedy"][:n], "sampled": preds["sampled"][:n]}
    return figures, examples


def consistency(model, *, clips: int, frames: int, seed: int = 0, temperature: float = 1.0,
                progress: bool = False) -> tuple[dict, dict]:
    """Warping error and frame difference of real, generated and no-context clips of `frames` frames."""
    from arvid.pipeline import Arvid

    real, labels = eval_dataset(model, frames, seed).batch(range(clips))
    labels = model_labels(model, labels)
    ablated = Arvid(model.tokenizer, no_context_generator(model.generator), model.device)
    sets = {"real": real}
    for name, m in (("generated", model), ("window-1 ablation", ablated)):
        stream = stream_frames(m, frames, labels=labels, seed=seed, temperature=temperature, batch=clips)
        sets[name] = collect(stream, frames, f"consistency ({name})", progress)
    rows = {}
    for name, vids in sets.items():
        errors = np.array([warping_error(v) for v in vids])
        rows[name] = {"warping_error": float(errors.mean()), "sem": _sem(errors),
                      "frame_difference": float(np.mean([frame_difference(v) for v in vids])),
                      "per_clip": errors.tolist()}
    figures = {"clips": clips, "frames": frames, "temperature": temperature, "labels_given": labels is not None,
               "farneback": FARNEBACK, "rows": rows}
    return figures, {name: v[:1] for name, v in sets.items()}


def long_clips(model, *, clips: int, frames: int, block: int = BLOCK, real_clips: int = 32, seed: int = 0,
               temperature: float = 1.0, progress: bool = False) -> tuple[dict, dict]:
    """`clips` clips of `frames` frames generated as one batch, keeping per-frame statistics only."""
    from tqdm import tqdm

    block = min(block, frames)
    ds = eval_dataset(model, frames, seed)
    real = [ds[i] for i in range(real_clips + clips)]  # one at a time would do; these are small
    real_stats = block_stats(*map(np.stack, zip(*(frame_stats(c.video) for c in real))), block)
    rule = CollapseRule.from_real({k: v[:real_clips] for k, v in real_stats.items()})
    labels = model_labels(model, np.stack([c.labels for c in real[:clips]]))
    intensity, blobs, shown = [], [], []
    stream = stream_frames(model, frames, labels=labels, seed=seed, temperature=temperature, batch=clips)
    for t, f in enumerate(tqdm(stream, total=frames, desc="long clips", unit="frame", disable=not progress)):
        i, b = frame_stats(f)  # (B,) each
        intensity.append(i)
        blobs.append(b)
        if t % block == 0:
            shown.append(f[:2])  # every block-th frame of the first two clips, for the sheet
    gen = block_stats(np.stack(intensity, 1), np.stack(blobs, 1), block)  # (B, n_blocks) each
    reasons = [rule.reasons(*(gen[k][c] for k in ("intensity", "blobs", "max_blobs"))) for c in range(clips)]
    held_out = [rule.reasons(*(real_stats[k][real_clips + c] for k in ("intensity", "blobs", "max_blobs")))
                for c in range(clips)]
    figures = {"clips": clips, "frames": frames, "block": block, "real_clips": real_clips, "temperature": temperature,
               "labels_given": labels is not None, "rule": {**asdict(rule), "blob_range": rule.blob_range},
               "threshold": THRESHOLD, "min_area": min_area(*model.resolution),
               "generated": {k: v.tolist() for k, v in gen.items()},
               "real": {k: v[:real_clips].tolist() for k, v in real_stats.items()},
               "collapsed": [c for c in range(clips) if reasons[c]], "reasons": {c: r for c, r in enumerate(reasons) if r},
               "real_held_out_flagged": [c for c in range(clips) if held_out[c]]}
    figures["collapse_rate"] = len(figures["collapsed"]) / clips
    return figures, {"every_block": np.stack(shown, 1)}  # (2, n_blocks, H, W, C)


def tokenizer_table(model, *, clips: int, seed: int = 0, h264: bool = True, progress: bool = False) -> dict:
    """`arvid eval tokenizer`'s figures on clips of 1 + τ·ceil(16/τ) frames (17 for τ in 1, 2, 4)."""
    from arvid.tokenizer.evaluate import evaluate_tokenizer

    tau = model.temporal_factor
    ds = eval_dataset(model, 1 + tau * math.ceil(16 / tau), seed)
    with torch.inference_mode():
        report = evaluate_tokenizer(model.tokenizer, ds, clips=clips, h264=h264, progress=progress)
    return {"table": report.table(), **report.to_dict()}


def _sem(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


# ---------------------------------------------------------------- acceptance (issue 7)


def acceptance(figures: dict) -> list[dict]:
    """One line per acceptance target, computed from the figures: name, target, measured, passed (None: n/a)."""
    lines = []
    cont = figures.get("continuation")
    if cont:
        g, c = cont["rows"]["greedy"]["mse"], cont["rows"]["copy last frame"]["mse"]
        drop = 1 - g / c if c > 0 else float("nan")
        lines.append(dict(name="continuation", target="greedy MSE at least 30% below copy-last",
                          measured=f"greedy {g:.1f} vs copy-last {c:.1f}: {drop:.0%} lower", passed=bool(drop >= 0.3)))
    cons = figures.get("consistency")
    if cons:
        r = cons["rows"]
        real, gen, abl = (r[k]["warping_error"] for k in ("real", "generated", "window-1 ablation"))
        ratio = gen / real if real > 0 else float("inf")
        lines.append(dict(name="consistency vs real", target="generated warping error within 1.5x of real (either side)",
                          measured=f"generated {gen:.4f} vs real {real:.4f}: {ratio:.2f}x",
                          passed=bool(1 / 1.5 <= ratio <= 1.5)))
        lines.append(dict(name="consistency vs ablation", target="generated warping error below the window-1 ablation",
                          measured=f"generated {gen:.4f} vs ablation {abl:.4f}", passed=bool(gen < abl)))
    long = figures.get("long_clips")
    if long:
        n, k = long["clips"], len(long["collapsed"])
        lines.append(dict(name="long clips", target="at most 1 collapse in 16 clips of 1,024 frames",
                          measured=f"{k} of {n} clips of {long['frames']} frames collapsed",
                          passed=bool(k <= 1) if n >= 16 and long["frames"] >= 1024 else None))
    return lines


# ---------------------------------------------------------------- the whole evaluation


def evaluate_generation(model, out, settings: EvalSettings, *, command: str = "", model_name: str = "",
                        progress: bool = False) -> dict:
    """Run every protocol, write the report folder `out`, return the figures."""
    from pathlib import Path

    from arvid.generator.report import write_report
    from arvid.utils import check_target

    settings.check()
    out = Path(out)
    check_target(out, is_dir=True)
    out.mkdir(exist_ok=True)
    figures = {"command": command, "model": describe_model(model, model_name), "hardware": hardware(model.device),
               "settings": asdict(settings), "elapsed_s": {}}
    examples = {}
    s = settings
    runs = {
        "continuation": lambda: continuation(model, clips=s.clips, context=s.context, predict=s.predict, seed=s.seed,
                                             temperature=s.temperature, progress=progress),
        "consistency": lambda: consistency(model, clips=s.clips, frames=s.consistency_frames, seed=s.seed,
                                           temperature=s.temperature, progress=progress),
        "long_clips": lambda: long_clips(model, clips=s.long_clips, frames=s.long_frames, block=s.block,
                                         real_clips=s.real_long_clips, seed=s.seed, temperature=s.temperature,
                                         progress=progress),
    }
    if not s.skip_tokenizer:
        runs["tokenizer"] = lambda: (tokenizer_table(model, clips=s.tokenizer_clips, seed=s.seed, h264=s.h264,
                                                     progress=progress), {})
    for name, run in runs.items():
        start = time.perf_counter()
        figures[name], examples[name] = run()
        figures["elapsed_s"][name] = round(time.perf_counter() - start, 1)
    figures["acceptance"] = acceptance(figures)
    write_report(out, figures, examples)
    return figures


def describe_model(model, name: str) -> dict:
    cfg = model.generator.config
    return {"name": name, "resolution": list(model.resolution), "temporal_factor": model.temporal_factor,
            "spatial_factor": model.tokenizer.spatial_factor, "codebook_size": model.tokenizer.codebook_size,
            "generator": cfg.to_dict(),
            "parameters": sum(p.numel() for p in model.generator.parameters())}


def hardware(device: torch.device) -> dict:
    from arvid.benchmark import device_info

    return {**device_info(device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
