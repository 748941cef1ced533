"""`arvid train tokenizer`: the task (model, deterministic batches, loss) and its command-line options.

`arvid train tokenizer` (the engine's CLI) calls `add_arguments(parser)` and then
`task_from_args(args)`; the engine owns the loop (AdamW, warmup + cosine, bf16 autocast on a GPU,
DDP, checkpoints, --resume). The task supplies the model, deterministic batches and the loss:

    loss = l1_weight·|x̂ - x| + l2_weight·(x̂ - x)² + quantizer aux loss (LFQ entropy, VQ/LFQ commitment)
           + consistency_weight·|x̂_t - warp(x̂_t-1, F_t)|        (with --consistency-weight; 0 by default)

with PSNR and codebook usage (the fraction of codes used in the batch) as metrics. The consistency term
warps each reconstructed frame onto the next along the real clip's optical flow F_t and charges what
differs, where that flow explains the real frames: a reconstruction whose strokes flicker or morph between
frames pays for it even where its per-frame error is small (the warping error of `arvid eval generation`
measures the same flicker). The shipped decoder was trained with it.

`--context` trains a tokenizer that codes each latent frame against the decoder's previous output
(model.py): the clip runs latent frame by latent frame, backpropagating through time.

`--init DIR` starts from a trained tokenizer's weights (with a fresh optimizer and schedule) and takes
its architecture from DIR. With `--train-part decoder` only the decoder learns: the encoder and the
quantizer are frozen, so every code stays what it was, code files and generators made with DIR keep
working, and the decoder can learn from longer clips to render them better. `--warp` with `--init` adds
motion compensation (warp.py) to that decoder; its new flow and gate layers start at zero.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from arvid.data import make_dataset
from arvid.errors import ArvidError
from arvid.tokenizer import Tokenizer, TokenizerConfig, tensor_to_video, video_to_tensor
from arvid.tokenizer.frames import is_valid_frames, nearest_valid_frames
from arvid.tokenizer.warp import warp as warp_frames
from arvid.train.options import TRAIN_PARTS, tokenizer_arguments as add_arguments
from arvid.video.flow import clip_flows, require_opencv


class TokenizerTask:
    """A TrainTask for the tokenizer: batch i of rank r is a pure function of (step, rank)."""

    kind = "tokenizer"

    def __init__(self, config: TokenizerConfig, dataset_name: str, frames: int, size: int,
                 data_path: str | None = None, seed: int = 0, init: str | None = None, part: str = "all",
                 warp: bool = False, consistency_weight: float = 0.0, eval_every: int = 0, eval_clips: int = 8):
        if part not in TRAIN_PARTS:
            raise ArvidError(f"--train-part must be one of {', '.join(TRAIN_PARTS)}, got {part!r}")
        if part != "all" and init is None:
            raise ArvidError(f"--train-part {part} trains part of a trained tokenizer: give it with --init DIR")
        if not (math.isfinite(consistency_weight) and consistency_weight >= 0):
            raise ArvidError(f"--consistency-weight must be a finite number >= 0, got {consistency_weight}")
        if consistency_weight:
            require_opencv()  # fail before training when OpenCV is missing
        if eval_every < 0 or eval_clips < 1:
            raise ArvidError(f"--eval-every must be >= 0 (0: no evaluation) and --eval-clips >= 1, got {eval_every} "
                             f"and {eval_clips}")
        self.init, self.part = init, part
        self.eval_every, self.eval_clips, self.seed, self.data_path = eval_every, eval_clips, seed, data_path
        self._eval_set: torch.Tensor | None = None
        self._shown: list[tuple[str, np.ndarray]] = []
        self.consistency_weight = float(consistency_weight)
        self._init_model = Tokenizer.from_pretrained(init) if init is not None else None  # fails before training
        if part == "decoder":  # refuses, before anything is written, a tokenizer that cannot be frozen
            try:
                self._init_model.freeze_encoder()
            except ArvidError as e:
                raise ArvidError(f"--init {init}: {e}") from None
        if init is not None:
            config = self._init_model.config
            config = config.replace(notes={**config.notes, "init": str(init), "trained_part": part},
                                    warp=config.warp or warp)
        self.added_warp = init is not None and warp and not self._init_model.config.warp
        check_clip_size(frames, size, config, "--frames", "--size")
        self.dataset = make_dataset(dataset_name, frames=frames, size=size, split="train", seed=seed, path=data_path)
        if self.dataset.channels != config.channels:
            if init is not None:
                raise ArvidError(f"--dataset {dataset_name} has {self.dataset.channels} channel(s), but the tokenizer "
                                 f"{init} takes {config.channels}: train on data it can read")
            config = config.replace(channels=self.dataset.channels)
        Tokenizer(config).latent_shape(frames, self.dataset.height, self.dataset.width)  # fail early on sizes
        notes = {**config.notes, "dataset": dataset_name, "frames": frames, "size": size}
        if hasattr(self.dataset, "notice"):  # a folder of the user's videos
            from arvid.data.stats import dataset_stats

            if os.environ.get("RANK", "0") == "0":
                print(f"arvid: {self.dataset.notice()}")
            # what the footage looks like, so that extend can say when an input is far from it
            notes["data_stats"] = dataset_stats(self.dataset).to_dict()
        if consistency_weight:
            notes["consistency_weight"] = float(consistency_weight)
        self.config = config.replace(notes=notes)
        self.dataset_name, self.frames, self.size = dataset_name, frames, size
        self._eval_data = make_dataset(dataset_name, frames=frames, size=size, split="eval", seed=seed,
                                       path=data_path) if eval_every else None  # refused now, not at the first evaluation

    def build_model(self) -> Tokenizer:
        if self.init is None:
            return Tokenizer(self.config)
        tok = Tokenizer(self.config)  # the same architecture, with this run's notes; a new model on every call
        missing, unexpected = tok.load_state_dict(self._init_model.state_dict(), strict=False)
        new = [k for k in missing if not (self.added_warp and k.startswith("decoder.motion_out."))]
        if new or unexpected:  # pragma: no cover - the configs are the same but for warp
            raise AssertionError(f"--init {self.init}: missing {new}, unexpected {unexpected}")
        return tok.freeze_encoder().train() if self.part == "decoder" else tok.train()

    def model_config(self) -> dict:
        return self.config.to_dict()

    def normalize_config(self, saved: dict) -> dict:
        """A checkpoint's config as this version writes it: settings added since then take their defaults (which
        keep the codes' meaning), so a run started before them resumes. A config that does not parse is left as it is."""
        try:
            return TokenizerConfig.from_dict(saved).to_dict()
        except ArvidError:
            return saved

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device) -> torch.Tensor:
        """Clips (step·world_size + rank)·batch_size + [0, batch_size) of the training split, (B, C, T, H, W)."""
        first = (step * world_size + rank) * batch_size
        videos, _ = self.dataset.batch(range(first, first + batch_size))  # uint8 (B, T, H, W, C)
        return video_to_tensor(videos).to(device)

    def loss(self, model, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        recon, codes, aux = model(batch)
        recon = recon.float()
        mse = F.mse_loss(recon, batch)
        loss = self.config.l2_weight * mse + self.config.l1_weight * F.l1_loss(recon, batch) + aux
        metrics = {
            "psnr": psnr_from_mse(mse.item()),
            "usage": torch.unique(codes).numel() / self.config.codebook_size,
        }
        if self.consistency_weight and batch.shape[2] > 1:
            inconsistency = consistency_loss(recon, batch)
            loss = loss + self.consistency_weight * inconsistency
            metrics["inconsistency"] = inconsistency.item()
        return loss, metrics

    def throughput(self, batch: torch.Tensor) -> dict[str, float]:
        return {"frames": float(batch.shape[0] * batch.shape[2])}

    def eval_figures(self, model) -> dict[str, float]:
        """PSNR of the reconstructions of the first --eval-clips clips of the dataset's eval split (the same clips
        at every evaluation); the first two, beside their reconstructions, are what `preview_clips` shows."""
        if self._eval_set is None:
            self._eval_set = video_to_tensor(self._eval_data.batch(range(self.eval_clips))[0])  # (N, C, T, H, W)
        device = next(model.parameters()).device
        se, shown = 0.0, []
        for first in range(0, self.eval_clips, 4):
            x = self._eval_set[first: first + 4].to(device)
            recon = model(x)[0].float().clamp(-1, 1)
            se += F.mse_loss(recon, x, reduction="sum").item()
            if first == 0:
                shown = [(title, tensor_to_video(v[None])[0]) for i in range(min(2, len(x)))
                         for title, v in ((f"held-out clip {i + 1}", x[i]), ("reconstructed", recon[i]))]
        self._shown = shown
        return {"eval_psnr": psnr_from_mse(se / self._eval_set.numel())}

    def preview_clips(self, model) -> list[tuple[str, np.ndarray]]:
        return self._shown


def check_clip_size(frames: int, size: int, config: TokenizerConfig, frames_flag: str, size_flag: str,
                    first: int = 1) -> None:
    """ArvidError naming the flag and the valid values when clips of `frames` frames of `size` pixels do not fit
    a tokenizer of `config` (first + k·τ frames, `first` being the frames its first latent frame makes; a size that
    is a multiple of the spatial factor, or a layered tokenizer's own size)."""
    tau, s = config.temporal_factor, config.spatial_factor
    if frames < 1 or not is_valid_frames(frames, tau, first):
        near = " or ".join(str(n) for n in nearest_valid_frames(max(frames, 1), tau, first))
        rule = f"1 + k·{tau}" if first else f"k·{tau}"
        raise ArvidError(f"{frames_flag} {frames} does not fit the tokenizer: it takes {rule} frames (τ = {tau}): "
                         f"give {near}")
    fixed = getattr(config, "size", None)
    if fixed is not None and tuple(fixed) != (size, size):
        raise ArvidError(f"{size_flag} {size} does not fit the tokenizer: it codes {fixed[0]}x{fixed[1]} frames: "
                         f"give {fixed[0]}")
    if size < s or size % s:
        near = " or ".join(str(n) for n in sorted({max(s, size // s * s), (size // s + 1) * s}))
        raise ArvidError(f"{size_flag} {size} does not fit the tokenizer: frames must be a multiple of {s} pixels "
                         f"(its spatial factor): give {near}")


def consistency_loss(recon: torch.Tensor, target: torch.Tensor, tolerance: float = 0.1) -> torch.Tensor:
    """Mean |x̂_t - warp(x̂_t-1, F_t)| over frames t >= 1 of (B, C, T, H, W) clips, F_t being the optical flow of the
    real clip from frame t back to t-1 (Farneback, as in the warping error). Only pixels where the flow explains
    the real clip count (|x_t - warp(x_t-1, F_t)| <= tolerance, in [-1, 1] units): occlusions and flow failures
    are left to the reconstruction loss. The reconstruction must move as the real clip moves, so a frame that
    stands still or flickers pays; a steady error does not."""
    b, c, t, h, w = target.shape
    gray = tensor_to_video(target.float().mean(dim=1, keepdim=True))[..., 0]  # uint8 (B, T, H, W), for the flow
    flows = torch.from_numpy(np.stack([clip_flows(g) for g in gray])).to(target.device)  # (B, T-1, 2, H, W)
    flows = flows.reshape(b * (t - 1), 2, h, w)

    def pairs(x):  # (B, C, T, H, W) -> frames t-1 and t, each (B·(T-1), C, H, W)
        x = x.float().transpose(1, 2)
        return x[:, :-1].reshape(-1, c, h, w), x[:, 1:].reshape(-1, c, h, w)

    (prev, cur), (rprev, rcur) = pairs(target), pairs(recon)
    explained = ((warp_frames(prev, flows) - cur).abs().amax(dim=1, keepdim=True) <= tolerance).float()
    return ((warp_frames(rprev, flows) - rcur).abs() * explained).mean()


def psnr_from_mse(mse: float, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of an MSE measured on values spanning `peak_to_peak` ([-1, 1]: 2; uint8: 255)."""
    return 10 * math.log10(peak_to_peak**2 / max(mse, 1e-12))


def config_from_args(args: argparse.Namespace) -> TokenizerConfig:
    overrides = {
        "temporal_factor": args.tau, "spatial_factor": args.spatial_factor, "quantizer": args.quantizer,
        "num_codes": args.num_codes, "width": args.width, "max_width": args.max_width,
        "patch": args.patch, "depth": args.depth, "latent_depth": args.latent_depth,
        "temporal_kernel": getattr(args, "temporal_kernel", None),
        "context": True if getattr(args, "context", False) else None,
        "l1_weight": getattr(args, "l1_weight", None), "l2_weight": getattr(args, "l2_weight", None),
    }
    if args.levels is not None:
        try:
            overrides["levels"] = [int(v) for v in str(args.levels).split(",")]
        except ValueError:
            raise ArvidError(f"--levels must be comma-separated integers such as 8,6,5, got {args.levels!r}") from None
    if getattr(args, "warp", False):
        overrides["warp"] = True
    return TokenizerConfig.preset(args.preset, **{k: v for k, v in overrides.items() if v is not None})


ARCHITECTURE_FLAGS = ("tau", "spatial_factor", "quantizer", "levels", "num_codes", "width", "max_width", "patch",
                      "depth", "latent_depth", "temporal_kernel", "context", "l1_weight", "l2_weight")


def task_from_args(args: argparse.Namespace) -> TokenizerTask:
    from arvid.utils.memory import check_fits

    # a batch's frames as float32: the least a step holds, before the dataset is built or anything is written
    check_fits(max(args.batch_size, 0) * max(args.frames, 0) * max(args.size, 0) ** 2 * 3 * 4,
               f"a batch of {args.batch_size:,} clips of {args.frames:,} frames of {args.size}x{args.size}",
               "lower --batch-size, --frames or --size")
    init = getattr(args, "init", None)
    if init is not None:
        given = [f"--{f.replace('_', '-')}" for f in ARCHITECTURE_FLAGS
                 if getattr(args, f, None) is not None and getattr(args, f) is not False]  # 0 is a value, False is unset
        if given:
            raise ArvidError(f"--init {init} takes the architecture from that tokenizer: drop {', '.join(given)}")
    return TokenizerTask(config_from_args(args), args.dataset, args.frames, args.size,
                         data_path=args.data_path, seed=getattr(args, "seed", 0) or 0,
                         init=init, part=getattr(args, "train_part", "all"),
                         warp=bool(getattr(args, "warp", False)),
                         consistency_weight=getattr(args, "consistency_weight", 0.0) or 0.0,
                         eval_every=getattr(args, "eval_every", 0) or 0, eval_clips=getattr(args, "eval_clips", 8))
