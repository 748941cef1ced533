"""`arvid train generator`: the task (model, deterministic batches, loss) and its command-line options.

Data: a token dataset folder (see `arvid.train.tokens`), given with --tokens, or built once from
an arvid dataset and a trained tokenizer (--tokenizer PATH --dataset NAME) into OUT/tokens-train
and OUT/tokens-eval, which later runs and --resume reuse. Each step draws random windows of
--train-frames latent frames; batch (step, rank) is a pure function of its arguments, so resume
is exact. The loss is next-token cross-entropy over every slot; the bar shows it in bits per
token. Every --eval-every steps (and at the last step) the engine asks `eval_figures` for the bits per
token of a fixed set of held-out windows (eval_bits_per_token) and `preview_clips` for held-out clips beside
the model's continuations of their first latent frame (decoded by the tokenizer, into OUT/preview.png).

Masked models (--decoding masked) learn to fill in a latent frame: each window is run twice in one
pass, clean and masked. In the masked copy every latent frame has a random fraction of its tokens
replaced by the mask token, the fraction r = cos(π/2·u) with u ~ U(0, 1) (MaskGIT's cosine schedule,
at least one token), and each masked frame sees the clean frames before it, as it will through the KV
cache. The loss is the cross-entropy of the masked tokens (bits per masked token on the bar; the
held-out figure is measured on the same fixed masks at every evaluation).

Conditioning: clips' labels enter as the label embedding; with probability --label-dropout a
clip's labels are replaced by the null label, which is what classifier-free guidance needs.

`--init DIR` starts from a trained generator (its weights and architecture; a fresh optimizer and schedule),
for instance to train it further on more clips, or to start a masked generator from a raster one's weights
(--decoding masked). --window and --sinks may differ from DIR's: no weight depends on how far attention reaches.

Windows have at least window + sinks + 2 latent frames (a shorter --train-frames is refused), so that
training shows the sinks at the distance they keep for ever in long generation (see
`arvid.generator.rope.sink_shift`).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from arvid.data import make_dataset
from arvid.errors import ArvidError
from arvid.generator import Generator, GeneratorConfig, slot_inputs
from arvid.tokenizer import AnyTokenizer, load_tokenizer, tensor_to_video
from arvid.train.distributed import unwrap
from arvid.train.options import MODEL_FLAGS as _MODEL_FLAGS, generator_arguments as add_arguments, train_frames_minimum
from arvid.train.tokens import TOKEN_FOLDERS, TokenDataset, build_token_dataset
from arvid.utils.device import resolve_device

LN2 = math.log(2.0)
EVAL_SEED = 12345


@dataclass
class GeneratorTask:
    config: GeneratorConfig
    train_data: TokenDataset
    eval_data: TokenDataset | None = None
    train_frames: int = 0  # latent frames per training window (0: whole clips)
    label_dropout: float = 0.1
    eval_every: int = 200
    eval_windows: int = 64
    steps: int = 0  # total steps of the run: evaluate at the last one
    seed: int = 0
    init: Generator | None = None  # trained weights to start from
    tokenizer: AnyTokenizer | None = None  # decodes the preview's clips (none: no preview)
    kind: str = "generator"

    def __post_init__(self) -> None:
        self.train_frames = self.train_frames or self.train_data.frames

    def build_model(self) -> Generator:
        model = Generator(self.config)
        if self.init is not None:
            model.load_state_dict(self.init.state_dict())
        return model

    def model_config(self) -> dict:
        return self.config.to_dict()

    def normalize_config(self, saved: dict) -> dict:
        """A checkpoint's config as this version writes it (settings added since take their defaults: a run
        started before `decoding` existed is a raster run). A config that does not parse is left as it is."""
        try:
            return GeneratorConfig.from_dict(saved).to_dict()
        except ArvidError:
            return saved

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device) -> dict:
        rng = np.random.default_rng([self.seed, step, rank, world_size])
        tokens, labels = self.train_data.windows(rng, batch_size, self.train_frames)
        if self.config.conditional:
            drop = torch.from_numpy(rng.random(batch_size) < self.label_dropout)
            labels = torch.where(drop[:, None], self.config.null_label, labels)
        return self._tensors(tokens, labels, device, rng)

    def _tensors(self, tokens: torch.Tensor, labels: torch.Tensor, device, rng: np.random.Generator) -> dict:
        """raster: inputs (B, N) = the tokens shifted by one. masked: inputs = the tokens with each frame's random
        share masked, `clean` = the tokens, `scored` (B, N) bool = the masked positions."""
        flat = tokens.reshape(tokens.shape[0], -1)  # (B, N)
        out = {"targets": flat.to(device), "labels": labels.to(device) if self.config.conditional else None}
        if not self.config.masked:
            return {**out, "inputs": slot_inputs(tokens, self.config.bos_token).to(device)}
        scored = torch.from_numpy(mask_frames(rng, *tokens.shape[:2], self.config.frame_tokens)).reshape(flat.shape)
        inputs = flat.masked_fill(scored, self.config.mask_token)
        return {**out, "inputs": inputs.to(device), "clean": flat.to(device), "scored": scored.to(device)}

    def _logits(self, model, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, V) and targets (n,) of the scored tokens: all (raster) or the masked ones (masked)."""
        if not self.config.masked:
            return model(b["inputs"], b["labels"]).flatten(0, 1), b["targets"].flatten()
        logits = model(b["inputs"], b["labels"], clean=b["clean"])  # (B, N, V)
        return logits[b["scored"]], b["targets"][b["scored"]]

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits, targets = self._logits(model, batch)
        loss = F.cross_entropy(logits.float(), targets)
        return loss, {self.metric: loss.item() / LN2}

    def eval_figures(self, model) -> dict[str, float]:
        """What the engine records at every --eval-every steps: the held-out bits per (masked) token."""
        if self.eval_data is None:
            return {}
        return {"eval_" + self.metric: self.evaluate(model, next(model.parameters()).device)}

    def preview_clips(self, model, clips: int = 2) -> list[tuple[str, np.ndarray]]:
        """The first `clips` held-out clips (training clips without held-out ones) as the tokenizer shows them,
        each followed by the model's continuation of its first latent frame, decoded: (title, uint8 (T, H, W, C))."""
        from arvid.generator.sampler import generate

        if self.tokenizer is None:
            return []
        data = self.eval_data or self.train_data
        n = min(clips, data.num_clips)
        real = torch.from_numpy(np.asarray(data.tokens[:n, :self.train_frames]).astype(np.int64))  # (B, t, h, w)
        labels = torch.from_numpy(data.labels[:n].copy()) if self.config.conditional else None
        frames = list(generate(unwrap(model), real.shape[1] - 1, batch=n, labels=labels, context=real[:, :1], seed=0))
        made = torch.cat([real[:, :1], torch.stack(frames, dim=1).cpu()], dim=1) if frames else real[:, :1]
        shown = [tensor_to_video(self.tokenizer.decode(t)) for t in (real, made)]  # uint8 (B, T, H, W, C) each
        which = "held-out" if self.eval_data is not None else "training"
        return [(title, clip[i]) for i in range(n) for title, clip in
                ((f"{which} clip {i + 1} (through the tokenizer)", shown[0]),
                 ("generated after its first latent frame", shown[1]))]

    @property
    def metric(self) -> str:
        return "bits_per_masked_token" if self.config.masked else "bits_per_token"

    @torch.no_grad()
    def evaluate(self, model, device, batch_size: int = 16) -> float:
        """Bits per (masked) token on a fixed set of held-out windows (the same windows and masks at every call)."""
        bare = unwrap(model)
        rng = np.random.default_rng(EVAL_SEED)
        total, count = 0.0, 0
        for first in range(0, self.eval_windows, batch_size):
            n = min(batch_size, self.eval_windows - first)
            logits, targets = self._logits(bare, self._tensors(*self.eval_data.windows(rng, n, self.train_frames),
                                                               device, rng))
            total += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            count += targets.numel()
        return total / count / LN2

    def throughput(self, batch: dict) -> dict[str, float]:
        return {"tokens": float(batch["targets"].numel())}


def mask_frames(rng: np.random.Generator, batch: int, frames: int, frame_tokens: int) -> np.ndarray:
    """Which tokens to mask, bool (B, T, F): in each latent frame a share r = cos(π/2·u), u ~ U(0, 1), of its F tokens
    (MaskGIT's cosine schedule; at least one), at random places."""
    ratio = np.cos(np.pi / 2 * rng.random((batch, frames, 1)))  # (B, T, 1)
    count = np.maximum(1, np.ceil(ratio * frame_tokens)).astype(np.int64)
    order = rng.random((batch, frames, frame_tokens)).argsort(-1).argsort(-1)  # a random rank of each token
    return order < count


# ---------------------------------------------------------------- command line

_EXTENT = ("window_frames", "sink_frames")  # how far attention reaches: no parameter depends on it, so --init takes it


def task_from_args(args: argparse.Namespace) -> GeneratorTask:
    overrides = {name: getattr(args, flag) for flag, name in _MODEL_FLAGS.items() if getattr(args, flag) is not None}
    init = getattr(args, "init", None)
    init_model = Generator.from_pretrained(init) if init is not None else None  # fails before any tokenizing
    if init_model is not None:
        other = [f"--{flag.replace('_', '-')} {getattr(args, flag)} (it has {getattr(init_model.config, name)})"
                 for flag, name in _MODEL_FLAGS.items() if name not in _EXTENT
                 and name in overrides and overrides[name] != getattr(init_model.config, name)]
        if other:
            raise ArvidError(f"--init {init} brings its own architecture: leave out {', '.join(other)}")
    train_data, eval_data = _data_from_args(args)
    h, w = train_data.latent_hw
    conditional = train_data.num_classes > 0 and train_data.labels_per_clip > 0 and not args.no_labels
    if init_model is not None:
        config = init_model.config
        want = (train_data.vocab_size, (h, w), train_data.num_classes if conditional else 0)
        if (config.vocab_size, (config.latent_h, config.latent_w), config.num_classes) != want:
            raise ArvidError(f"--init {init}: its generator reads {config.vocab_size} codes on a {config.latent_h}x"
                             f"{config.latent_w} grid with {config.num_classes} classes; the training tokens have "
                             f"{want[0]} codes on {h}x{w} with {want[2]}: tokenize with the tokenizer it was trained on")
        if getattr(args, "decoding", None):  # the same parameters learn the other decoding kind
            config = replace(config, decoding=args.decoding)
        config = replace(config, **{name: v for name, v in overrides.items() if name in _EXTENT})
    else:
        config = GeneratorConfig.from_name(
            args.preset, vocab_size=train_data.vocab_size, latent_h=h, latent_w=w,
            num_classes=train_data.num_classes if conditional else 0,
            labels_per_clip=train_data.labels_per_clip if conditional else 0, decoding=args.decoding or "raster",
            **overrides)
    if eval_data is not None and (eval_data.latent_hw != (h, w) or eval_data.vocab_size != train_data.vocab_size):
        raise ArvidError(f"--eval-tokens {eval_data.folder} does not match the training tokens (frame or vocabulary)")
    longest = min(train_data.frames, eval_data.frames if eval_data is not None else train_data.frames)
    frames = args.train_frames or longest
    if not 1 <= frames <= longest:
        raise ArvidError(f"--train-frames {frames} must be between 1 and the clips' {longest} latent frames")
    check_train_frames(frames, config, "--init " + str(init) if init_model is not None else f"preset {args.preset}",
                       given=bool(args.train_frames), longest=longest)
    if not 0 <= args.label_dropout <= 1:
        raise ArvidError(f"--label-dropout must be in [0, 1], got {args.label_dropout}")
    for flag, value in (("--eval-every", args.eval_every), ("--eval-windows", args.eval_windows)):
        if value < 1:
            raise ArvidError(f"{flag} must be at least 1, got {value}: the generator always measures held-out windows")
    return GeneratorTask(config, train_data, eval_data, frames, args.label_dropout if conditional else 0.0,
                         args.eval_every, args.eval_windows, getattr(args, "steps", 0), getattr(args, "seed", 0),
                         init_model, tokenizer=_preview_tokenizer(args, train_data))


def check_train_frames(frames: int, config: GeneratorConfig, origin: str, given: bool, longest: int) -> None:
    """ArvidError, with the numbers, when windows of `frames` latent frames are too short for the sinks: training
    must show them at the distance they keep for ever in long generation (window + sinks + 2 latent frames)."""
    least = train_frames_minimum(config.window_frames, config.sink_frames)
    if frames >= least:
        return
    rule = (f"at least {least} latent frames for {origin} (window {config.window_frames} + sinks "
            f"{config.sink_frames} + 2), so training shows the sink frames at the distance they keep in long clips")
    if given:
        fix = f"give --train-frames {least} or more" if least <= longest else "tokenize longer clips (--clip-frames)"
        raise ArvidError(f"--train-frames {frames} is too short: windows need {rule}; {fix}, or a smaller --window")
    raise ArvidError(f"the clips have {longest} latent frames: windows need {rule}; tokenize longer clips "
                     "(--clip-frames), or give a smaller --window")


def _data_from_args(args) -> tuple[TokenDataset, TokenDataset | None]:
    if args.tokens and args.tokenizer:
        raise ArvidError("give either --tokens (a token dataset) or --tokenizer (to tokenize --dataset), not both")
    if args.tokens:
        return TokenDataset(args.tokens), TokenDataset(args.eval_tokens) if args.eval_tokens else None
    if not args.tokenizer:
        raise ArvidError("no training data: give --tokens DIR, or --tokenizer PATH with --dataset NAME")
    out = Path(args.out)
    source = {"tokenizer": str(Path(args.tokenizer).resolve()), "dataset": args.dataset, "size": args.size,
              "frames": args.clip_frames, "data_path": args.data_path}
    train_folder, eval_folder = (out / name for name in TOKEN_FOLDERS)
    train = tokenized(train_folder, args, "train", args.clips, source)
    evals = tokenized(eval_folder, args, "eval", args.eval_clips, source) if args.eval_clips else None
    return train, evals


def _preview_tokenizer(args, data: TokenDataset) -> AnyTokenizer | None:
    """The tokenizer that made the training tokens (--tokenizer, or the one their folder names), to decode the
    preview; None when it is gone or does not read these codes: training goes on without a preview."""
    path = args.tokenizer or data.source.get("tokenizer")
    if not isinstance(path, str) or not Path(path).is_dir():
        return None
    try:
        tokenizer = _load_tokenizer(path, getattr(args, "device", "auto"))
    except ArvidError:
        return None
    return tokenizer if tokenizer.codebook_size == data.vocab_size else None


def _load_tokenizer(path, device_name: str) -> AnyTokenizer:
    device = resolve_device(device_name if device_name else "auto")
    return load_tokenizer(path, device=device).eval()


def tokenized(folder: Path, args, split: str, count: int, source: dict) -> TokenDataset:
    """The token dataset in `folder`, built by rank 0 when missing; other ranks wait for it."""
    want = {**source, "split": split, "clips": count}
    if not (folder / "meta.json").exists():
        if _is_main():
            _build(folder, args, split, count, want)
        else:
            _wait_for(folder / "meta.json")
    data = TokenDataset(folder)
    got = {k: data.source.get(k) for k in want}
    if got != want:
        raise ArvidError(f"{folder} holds tokens of another source ({got}, not {want}): delete it or use another --out")
    return data


def _build(folder: Path, args, split: str, count: int, source: dict) -> None:
    from arvid.train.tokenizer import check_clip_size

    tokenizer = _load_tokenizer(args.tokenizer, getattr(args, "device", "auto"))
    check_clip_size(args.clip_frames, args.size, tokenizer.config, "--clip-frames", "--size", tokenizer.first_frames)
    dataset = make_dataset(args.dataset, frames=args.clip_frames, size=args.size, split=split,
                           seed=getattr(args, "seed", 0), path=args.data_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"arvid: tokenizing {count} {split} clips of {args.dataset} into {folder}")
    if split == "train" and hasattr(dataset, "notice"):  # a folder: which files evaluation keeps apart
        print(f"arvid: {dataset.notice()}")
    build_token_dataset(tokenizer, dataset, count, folder, source=source)


def _wait_for(path: Path, timeout: float = 6 * 3600) -> None:
    start = time.monotonic()
    while not path.exists():
        if time.monotonic() - start > timeout:
            raise ArvidError(f"waited {timeout:.0f} s for rank 0 to write {path}")
        time.sleep(2.0)


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


__all__ = ["GeneratorTask", "add_arguments", "task_from_args", "tokenized"]
