"""`arvid train reader`: the label reader's task (model, deterministic batches, loss, held-out accuracy).

Data: frames of a labelled dataset's train split. Batch (step, rank) takes clips (step·world_size + rank)·n +
[0, n) of the split, n = ceil(B / --frames-per-clip), and --frames-per-clip random frames of each (drawn from a
generator seeded by (seed, step, rank)): a pure function of its arguments, so --resume is exact. Targets are
the clips' labels as multi-hot vectors (a -1 label is none); the loss is binary cross-entropy over the classes.

Evaluation: a fixed set of --eval-frames frames of the eval split (held-out digits for Moving MNIST), the same
at every evaluation. eval_accuracy is the share of them whose m most likely classes are exactly their m
distinct labels (frames without a label are left out); eval_bce is the loss there.

The run folder doubles as a reader folder: `LabelReader.from_pretrained(OUT)` loads its latest weights.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

from arvid.data import ClipDataset, make_dataset
from arvid.errors import ArvidError
from arvid.reader import KIND, LabelReader, ReaderConfig, multi_hot, shows_labels
from arvid.train.distributed import unwrap
from arvid.train.options import reader_arguments as add_arguments

EVAL_SEED = 12345


class ReaderTask:
    """A TrainTask for the label reader."""

    kind = KIND

    def __init__(self, config: ReaderConfig, train_data: ClipDataset, eval_data: ClipDataset, frames_per_clip: int = 4,
                 eval_every: int = 500, eval_frames: int = 1024, steps: int = 0, seed: int = 0):
        if frames_per_clip < 1 or eval_frames < 1 or eval_every < 0:
            raise ArvidError(f"--frames-per-clip {frames_per_clip} and --eval-frames {eval_frames} must be at least 1, "
                             f"--eval-every {eval_every} at least 0")
        self.config, self.train_data, self.eval_data = config, train_data, eval_data
        self.frames_per_clip, self.seed = frames_per_clip, seed
        self.eval_every, self.eval_frames = eval_every or steps, eval_frames  # 0: evaluate at the last step only
        self._eval_set: tuple[torch.Tensor, torch.Tensor] | None = None

    def build_model(self) -> LabelReader:
        return LabelReader(self.config)

    def model_config(self) -> dict:
        return self.config.to_dict()

    def normalize_config(self, saved: dict) -> dict:
        try:
            return ReaderConfig.from_dict(saved).to_dict()
        except ArvidError:
            return saved

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """B frames (B, C, H, W) in [0, 1] and their multi-hot targets (B, K)."""
        clips = math.ceil(batch_size / self.frames_per_clip)
        first = (step * world_size + rank) * clips
        rng = np.random.default_rng([self.seed, step, rank])
        x, labels = frames_of(self.train_data, range(first, first + clips), self.frames_per_clip, rng)
        return x[:batch_size].to(device), multi_hot(labels[:batch_size], self.config.num_classes).to(device)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, target = batch
        logits = model(x).float()  # (B, K)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        read = shows_labels(logits.detach(), _labels_of(target))
        return loss, {"accuracy": read.float().mean().item()}

    def throughput(self, batch) -> dict[str, float]:
        return {"frames": float(batch[0].shape[0])}

    def eval_figures(self, model) -> dict[str, float]:
        """eval_accuracy and eval_bce on the fixed held-out frames."""
        if self._eval_set is None:
            clips = math.ceil(self.eval_frames / self.frames_per_clip)
            x, labels = frames_of(self.eval_data, range(clips), self.frames_per_clip, np.random.default_rng(EVAL_SEED))
            keep = (labels[: self.eval_frames] >= 0).any(dim=1)  # frames with a label
            self._eval_set = x[: self.eval_frames][keep], labels[: self.eval_frames][keep]
        x, labels = self._eval_set
        if not len(x):
            return {}
        bare = unwrap(model)
        device = next(bare.parameters()).device
        logits = torch.cat([bare(x[i:i + 256].to(device)).float().cpu() for i in range(0, len(x), 256)])  # (N, K)
        bce = F.binary_cross_entropy_with_logits(logits, multi_hot(labels, self.config.num_classes))
        return {"eval_accuracy": shows_labels(logits, labels).float().mean().item(), "eval_bce": bce.item()}


def frames_of(dataset, clips: range, per_clip: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_clip` random frames of each clip: float (n·per_clip, C, H, W) in [0, 1] and int64 labels (n·per_clip, k)."""
    videos, labels = dataset.batch(clips)  # uint8 (n, T, H, W, C), int64 (n, k)
    t = rng.integers(0, videos.shape[1], size=(len(videos), per_clip))  # (n, per_clip)
    frames = videos[np.arange(len(videos))[:, None], t]  # (n, per_clip, H, W, C)
    x = torch.from_numpy(frames.reshape(-1, *frames.shape[2:])).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(np.repeat(labels, per_clip, axis=0))


def _labels_of(target: torch.Tensor) -> torch.Tensor:
    """Multi-hot (B, K) -> labels (B, K): the classes present, -1 elsewhere (what `shows_labels` reads)."""
    classes = torch.arange(target.shape[1], device=target.device).expand_as(target)
    return torch.where(target > 0, classes, -1)


# ---------------------------------------------------------------- command line


def task_from_args(args: argparse.Namespace) -> ReaderTask:
    if args.clip_frames < 1:
        raise ArvidError(f"--clip-frames must be at least 1, got {args.clip_frames}")
    data = {split: make_dataset(args.dataset, frames=args.clip_frames, size=args.size, split=split, seed=args.seed,
                                path=args.data_path) for split in ("train", "eval")}
    train = data["train"]
    if train.num_classes < 1 or train.labels_per_clip < 1:
        raise ArvidError(f"--dataset {args.dataset} has no labels, and a reader learns which labels a picture shows: "
                         "train it on a labelled dataset (moving-mnist, shapes, or a folder of videos in one "
                         "subfolder per class)")
    config = ReaderConfig(num_classes=train.num_classes, channels=train.channels, size=(train.height, train.width),
                          width=args.width, downsample=args.downsample)
    return ReaderTask(config, train, data["eval"], args.frames_per_clip, args.eval_every, args.eval_frames,
                      steps=args.steps, seed=args.seed)


__all__ = ["ReaderTask", "add_arguments", "frames_of", "task_from_args"]
