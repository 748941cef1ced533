"""The label reader: which label classes a picture shows, to pick among a model's candidate pictures.

A layered model draws its reference picture conditioned on labels (two digits, say 3 and 7). The reader scores
each candidate by how clearly it shows the asked-for labels, and the best one is kept, as CLIP reranks DALL-E's
samples. It is a small CNN with one sigmoid output per class (multi-label: is a thing of that class anywhere on
screen), trained on frames of a dataset's train split with `arvid train reader`; a model folder may hold one in
`reader/` beside `tokenizer/` and `generator/`.

    reader = LabelReader.from_pretrained(folder)
    scores = reader.label_scores(pictures, labels)  # uint8 (N, H, W[, C]), int64 (N, k) -> float (N,) on the CPU

Shapes: B batch, C channels, H/W picture height/width, K classes, w the config's width.

It is not `arvid eval`'s digit reader (`arvid.eval.digits`), and must not become it: the evaluation's reader is
an independent judge (another width, trained by the evaluation itself on its own draws), so a reader picking
the pictures cannot mark its own work.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from arvid.errors import ArvidError
from arvid.files import load_model_files, load_state, meta_layout, save_model

KIND = "reader"
FOLDER = "reader"  # where a model folder holds its optional label reader: MODEL/reader/, beside tokenizer/ and generator/
NO_LABEL = -1  # a label slot without a label (a clip with fewer labels, an unlabelled file of a folder)


@dataclass(frozen=True)
class ReaderConfig:
    num_classes: int = 10  # K
    channels: int = 1  # C: 1 gray, 3 RGB
    size: tuple[int, int] = (64, 64)  # (H, W) of the pictures it reads
    width: int = 16  # w: channels of the first convolutions (eval's judge has 32)
    downsample: int = 2  # the picture is average-pooled by this first (Moving MNIST strokes are 2-3 pixels wide)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(self.size))
        bad = [f"{n}={getattr(self, n)} (allowed {lo}..{hi})" for n, (lo, hi) in _LIMITS.items()
               if not lo <= getattr(self, n) <= hi]
        least = 4 * self.downsample  # two 2x max-pools after the downsampling
        if len(self.size) != 2 or not all(least <= s <= 1 << 14 for s in self.size):
            bad.append(f"size={list(self.size)} (two sides of {least}..{1 << 14} pixels: 4 x downsample at least)")
        if bad:
            raise ArvidError(f"invalid reader config: {', '.join(bad)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "ReaderConfig":
        """Build from untrusted JSON: unknown keys, missing keys and wrong types raise ArvidError."""
        if not isinstance(data, dict):
            raise ArvidError(f"{source}: the reader config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise ArvidError(f"{source}: reader config has unknown keys {unknown} and lacks keys {missing}; it was "
                             "written by another program or edited")
        ints = [data[n] for n in known - {"size"}] + (list(data["size"]) if isinstance(data["size"], list) else [])
        if not isinstance(data["size"], list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ArvidError(f"{source}: reader config fields must be integers and size a list [H, W], got {data}")
        try:
            return cls(**data)
        except ArvidError as e:
            raise ArvidError(f"{source}: {e}") from None


_LIMITS = {"num_classes": (1, 1 << 16), "channels": (1, 4), "width": (1, 1024), "downsample": (1, 16)}


class LabelReader(nn.Module):
    """(B, C, H, W) pictures in [0, 1] -> (B, K) logits, one per class: is a thing of that class on screen."""

    def __init__(self, config: ReaderConfig):
        super().__init__()
        self.config = config
        c, w = config.channels, config.width
        self.body = nn.Sequential(
            nn.AvgPool2d(config.downsample),  # (B, C, H/d, W/d)
            nn.Conv2d(c, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, H/2d, W/2d)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, H/4d, W/4d)
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),  # a receptive field of about one digit
        )
        self.head = nn.Linear(4 * w, config.num_classes)
        for m in self.body:
            if isinstance(m, nn.Conv2d):  # He initialisation keeps the activations' scale through the ReLUs
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, 4w, H/4d, W/4d)
        return self.head(h.amax(dim=(2, 3)))  # (B, K): a thing anywhere on screen, so the max over positions

    # -- reading pictures

    @torch.inference_mode()
    def probabilities(self, pictures: np.ndarray, batch: int = 256) -> torch.Tensor:
        """uint8 pictures (N, H, W) or (N, H, W, C) -> float (N, K) on the CPU: each class's sigmoid probability."""
        x = pictures_to_tensor(pictures, self.config)  # (N, C, H, W) in [0, 1]
        device = next(self.parameters()).device
        out = [torch.sigmoid(self(x[i:i + batch].to(device)).float()).cpu() for i in range(0, len(x), batch)]
        return torch.cat(out) if out else torch.zeros(0, self.config.num_classes)

    @torch.inference_mode()
    def label_scores(self, pictures: np.ndarray, labels: np.ndarray | torch.Tensor, batch: int = 256) -> torch.Tensor:
        """How clearly each picture shows its labels: float (N,) on the CPU, in [0, 1].

        pictures uint8 (N, H, W) or (N, H, W, C); labels int64 (N, k), -1 for no label. A picture's score is the
        smallest probability among its distinct labels (all of them must be on screen), 1.0 when it has none."""
        labels = check_labels(labels, len(pictures), self.config.num_classes)  # (N, k)
        labels = torch.cat([labels, torch.full((len(labels), 1), NO_LABEL)], dim=1)  # (N, k+1): never empty
        probs = self.probabilities(pictures, batch)  # (N, K)
        chosen = probs.gather(1, labels.clamp(min=0))  # (N, k+1)
        return torch.where(labels >= 0, chosen, torch.ones_like(chosen)).amin(dim=1)  # (N,)

    # -- files

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write `path/` with model.safetensors and config.json (atomically)."""
        save_model(path, self, self.config.to_dict(), KIND)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device=None) -> "LabelReader":
        """Load a reader folder (or the run folder of `arvid train reader`), in eval mode."""
        files = load_model_files(path, KIND, cls.layout)  # config, header and weights checked against the layout
        model = cls(ReaderConfig.from_dict(files.config, source=str(files.folder / "config.json")))
        load_state(model, files)
        model.eval()
        return model.to(device) if device is not None else model

    @staticmethod
    def layout(config: dict | ReaderConfig, source: str = "config") -> dict[str, torch.Tensor]:
        """The state dict of `LabelReader(config)`, built on the meta device (no memory for its weights)."""
        if not isinstance(config, ReaderConfig):
            config = ReaderConfig.from_dict(config, source=source)
        return meta_layout(lambda: LabelReader(config))


def pictures_to_tensor(pictures: np.ndarray, config: ReaderConfig) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1]; ArvidError unless they fit the reader."""
    pictures = np.asarray(pictures)
    if pictures.ndim == 3:
        pictures = pictures[..., None]  # (N, H, W, 1)
    h, w = config.size
    if pictures.dtype != np.uint8 or pictures.ndim != 4 or pictures.shape[1:] != (h, w, config.channels):
        raise ArvidError(f"the reader reads uint8 pictures (N, {h}, {w}, {config.channels}) or (N, {h}, {w}) for "
                         f"one channel; got {pictures.dtype} {tuple(pictures.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(pictures))  # (N, H, W, C)
    return x.permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W)


def check_labels(labels, n: int, num_classes: int) -> torch.Tensor:
    """int64 (N, k) labels, each -1 or a class in [0, K); ArvidError naming what is wrong otherwise."""
    labels = torch.as_tensor(np.asarray(labels))
    if labels.ndim == 1:
        labels = labels[:, None]  # one label per picture
    if labels.ndim != 2 or len(labels) != n or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ArvidError(f"labels must be integers (N, k) for N = {n} pictures, got {labels.dtype} {tuple(labels.shape)}")
    labels = labels.long()
    bad = labels[(labels < NO_LABEL) | (labels >= num_classes)]
    if len(bad):
        raise ArvidError(f"label {int(bad[0])} is not a class of this reader: it reads classes 0..{num_classes - 1} "
                         "(-1: no label)")
    return labels


def multi_hot(labels: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 (N, k) labels, -1 for none -> float (N, K): 1 for every class present."""
    labels = torch.as_tensor(np.asarray(labels)).long()  # (N, k)
    target = torch.zeros(len(labels), num_classes + 1)  # a last column collects the -1s
    target.scatter_(1, torch.where(labels >= 0, labels, num_classes), 1.0)
    return target[:, :num_classes]


def shows_labels(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Whether each picture's m most likely classes are exactly its m distinct labels: bool (N,) for logits (N, K)
    and labels (N, k) (-1 for none). A picture without labels counts as read when its labels are (none)."""
    target = multi_hot(labels, logits.shape[1]).bool()  # (N, K)
    m = target.sum(dim=1)  # (N,)
    rank = logits.argsort(dim=1, descending=True).argsort(dim=1)  # (N, K): 0 for the most likely class
    return ((rank < m[:, None]) == target).all(dim=1)


__all__ = ["FOLDER", "KIND", "LabelReader", "ReaderConfig", "multi_hot", "pictures_to_tensor", "shows_labels"]
