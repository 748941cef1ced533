"""A digit reader for Moving MNIST frames: which digit classes are on screen.

`arvid eval generation` uses it to measure label fidelity: does `--label 3,7` show a 3 and a 7? The
reader is a small CNN with one sigmoid output per class (a frame holds two digits), trained when the
evaluation runs, deterministically, on frames of the train split only (digits 0-3999, seconds on a
CPU); nothing is downloaded. It is read on held-out frames, and its accuracy on real held-out frames
is reported beside every generated figure: that is the ceiling of the measure (digits that overlap
can hide each other in real frames too).

    reader = train_reader(size=64)
    hits = label_hits(reader, frames, labels)  # frames uint8 (N, H, W, 1), labels (N, k) -> bool (N,)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arvid.data import make_dataset

NUM_CLASSES = 10


class DigitReader(nn.Module):
    """(B, 1, H, W) frames in [0, 1] -> (B, 10) logits, one per class: is a digit of that class on screen."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.AvgPool2d(2),  # H/2: strokes are 2-3 pixels wide, digits 28
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # H/4
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # H/8
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(4 * w, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, 4w, H/8, W/8): a receptive field of about one digit
        return self.head(h.amax(dim=(2, 3)))  # a digit anywhere in the frame: max over positions


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W[, 1]) -> float (N, 1, H, W) in [0, 1]."""
    frames = frames[..., 0] if frames.ndim == 4 else frames
    return torch.from_numpy(frames.astype(np.float32) / 255.0)[:, None]


def _multi_hot(labels: np.ndarray) -> torch.Tensor:
    """(N, k) class labels -> (N, 10) with 1 for every class present."""
    target = torch.zeros(len(labels), NUM_CLASSES)
    target.scatter_(1, torch.as_tensor(labels, dtype=torch.long), 1.0)
    return target


def train_reader(size: int = 64, steps: int = 1200, batch: int = 64, seed: int = 0) -> DigitReader:
    """Train a DigitReader on frames of Moving MNIST's train split (a pure function of the arguments)."""
    with torch.inference_mode(False), torch.enable_grad():  # callable from evaluation code that turned grads off
        return _train_reader(size, steps, batch, seed)


def _train_reader(size: int, steps: int, batch: int, seed: int) -> DigitReader:
    ds = make_dataset("moving-mnist", frames=20, size=size, split="train", seed=10_000 + seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reader = DigitReader()
    if steps == 0:
        return reader.eval()
    opt = torch.optim.AdamW(reader.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    per_clip = 4  # frames drawn from each clip
    for step in range(steps):
        videos, labels = ds.batch(range(step * (batch // per_clip), (step + 1) * (batch // per_clip)))  # (b, T, H, W, 1)
        t = torch.randint(0, videos.shape[1], (len(videos), per_clip), generator=gen).numpy()
        frames = np.concatenate([videos[i, t[i]] for i in range(len(videos))])  # (b·per_clip, H, W, 1)
        target = _multi_hot(np.repeat(labels, per_clip, axis=0))
        loss = F.binary_cross_entropy_with_logits(reader(_frames_to_tensor(frames)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return reader.eval()


@torch.inference_mode()
def label_hits(reader: DigitReader, frames: np.ndarray, labels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Whether each frame shows exactly its labels' classes: the reader's m most likely classes equal the m
    distinct classes of the frame's labels. frames uint8 (N, H, W[, 1]), labels (N, k) -> bool (N,)."""
    logits = torch.cat([reader(_frames_to_tensor(frames[i:i + batch])) for i in range(0, len(frames), batch)])
    hits = np.empty(len(frames), dtype=bool)
    for n, (row, lab) in enumerate(zip(logits, np.asarray(labels))):
        want = set(int(v) for v in lab)
        hits[n] = set(torch.topk(row, len(want)).indices.tolist()) == want
    return hits
