"""Tokenized clips for training the generator: tokenized once, stored, memory-mapped.

A token dataset is a folder:
    tokens.npy    uint16 or int32 (num_clips, t, h, w): latent codes, memory-mapped when read
    labels.npy    int64 (num_clips, k): the clips' labels (k = 0 when unlabelled)
    meta.json     {"vocab_size", "num_classes", "labels_per_clip", "source": {...}}

`build_token_dataset` tokenizes clips of an arvid dataset with a trained tokenizer and writes the
folder atomically; `TokenDataset` reads it as untrusted input (shapes, dtypes and code range are
checked, nothing is unpickled) and cuts random windows of latent frames from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from arvid.errors import ArvidError
from arvid.tokenizer import video_to_tensor
from arvid.utils.atomic import atomic_path
from arvid.utils.jsonfile import read_json

TOKENS, LABELS, META = "tokens.npy", "labels.npy", "meta.json"
TOKEN_FOLDERS = ("tokens-train", "tokens-eval")  # what `arvid train generator --tokenizer` builds in its run folder


class TokenDataset:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta = _read_meta(self.folder / META)
        self.vocab_size = meta["vocab_size"]
        self.num_classes, self.labels_per_clip = meta["num_classes"], meta["labels_per_clip"]
        self.source = meta.get("source", {})
        self.tokens = _load_array(self.folder / TOKENS, mmap=True)  # (num_clips, t, h, w)
        self.labels = _load_array(self.folder / LABELS, mmap=False)  # (num_clips, k)
        self._check()

    def _check(self) -> None:
        tok, lab = self.tokens, self.labels
        where = f"token dataset {self.folder}"
        if tok.ndim != 4 or tok.dtype not in (np.uint16, np.int32) or tok.shape[0] < 1:
            raise ArvidError(f"{where}: {TOKENS} must be uint16/int32 (clips, t, h, w), got {tok.dtype} {tok.shape}")
        if lab.ndim != 2 or lab.dtype != np.int64 or lab.shape != (tok.shape[0], self.labels_per_clip):
            raise ArvidError(f"{where}: {LABELS} must be int64 ({tok.shape[0]}, {self.labels_per_clip}), "
                             f"got {lab.dtype} {lab.shape}")
        hi = int(tok.max())  # one pass over the codes: a corrupt file fails here, not mid-training
        if int(tok.min()) < 0 or hi >= self.vocab_size:
            raise ArvidError(f"{where}: codes reach {hi}, outside the vocabulary of {self.vocab_size}")
        if lab.size and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ArvidError(f"{where}: labels outside 0..{self.num_classes - 1}")

    @property
    def num_clips(self) -> int:
        return self.tokens.shape[0]

    @property
    def frames(self) -> int:  # latent frames per clip
        return self.tokens.shape[1]

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.tokens.shape[2], self.tokens.shape[3]

    def windows(self, rng: np.random.Generator, count: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` random windows of `frames` latent frames: tokens int64 (B, frames, h, w), labels (B, k)."""
        if not 1 <= frames <= self.frames:
            raise ArvidError(f"windows of {frames} latent frames do not fit clips of {self.frames} in {self.folder}")
        clips = rng.integers(0, self.num_clips, size=count)
        starts = rng.integers(0, self.frames - frames + 1, size=count)
        toks = np.stack([self.tokens[c, s: s + frames] for c, s in zip(clips, starts)]).astype(np.int64)
        return torch.from_numpy(toks), torch.from_numpy(self.labels[clips].copy())


def write_token_dataset(folder: str | os.PathLike, tokens: np.ndarray, labels: np.ndarray, vocab_size: int,
                        num_classes: int = 0, source: dict | None = None) -> TokenDataset:
    """Write a token dataset folder atomically from arrays tokens (clips, t, h, w) and labels (clips, k)."""
    dtype = np.uint16 if vocab_size <= 1 << 16 else np.int32
    labels = np.asarray(labels, dtype=np.int64).reshape(len(tokens), -1)
    meta = {"vocab_size": int(vocab_size), "num_classes": int(num_classes),
            "labels_per_clip": int(labels.shape[1]), "source": source or {}}
    with atomic_path(folder, is_dir=True) as tmp:
        np.save(tmp / TOKENS, np.asarray(tokens).astype(dtype))
        np.save(tmp / LABELS, labels)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return TokenDataset(folder)


def build_token_dataset(tokenizer, dataset, count: int, folder: str | os.PathLike, batch_size: int = 8,
                        progress: bool = True, source: dict | None = None) -> TokenDataset:
    """Tokenize clips 0 .. count-1 of `dataset` (an arvid ClipDataset) with `tokenizer` into `folder`.

    The codes are written batch by batch into a memory-mapped file inside a temporary folder that
    is renamed into place at the end: an interrupted build leaves nothing behind.
    """
    from tqdm.auto import tqdm

    if count < 1:
        raise ArvidError(f"--clips must be at least 1, got {count}")
    t, h, w = tokenizer.latent_shape(dataset.frames, dataset.height, dataset.width)
    vocab = int(tokenizer.codebook_size)
    dtype = np.uint16 if vocab <= 1 << 16 else np.int32
    k = dataset.labels_per_clip
    labels = np.zeros((count, k), dtype=np.int64)
    device = next(tokenizer.parameters()).device
    meta = {"vocab_size": vocab, "num_classes": int(dataset.num_classes), "labels_per_clip": k,
            "source": {"dataset": dataset.name, "clips": count, "frames": dataset.frames, **(source or {})}}
    with atomic_path(folder, is_dir=True) as tmp:
        codes = np.lib.format.open_memmap(tmp / TOKENS, mode="w+", dtype=dtype, shape=(count, t, h, w))
        with torch.no_grad():
            for first in tqdm(range(0, count, batch_size), desc="tokenize", unit="batch", disable=not progress):
                idx = range(first, min(first + batch_size, count))
                videos, labs = dataset.batch(idx)  # uint8 (B, T, H, W, C), int64 (B, k)
                codes[first: idx.stop] = tokenizer.encode(video_to_tensor(videos).to(device)).cpu().numpy()
                labels[first: idx.stop] = labs.reshape(len(idx), k)
        codes.flush()
        del codes
        np.save(tmp / LABELS, labels)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return TokenDataset(folder)


def _read_meta(path: Path) -> dict:
    if not path.exists():
        raise ArvidError(f"{path} is missing: not a token dataset folder (build one with --tokenizer and --dataset)")
    meta = read_json(path, 1 << 20)
    ints = ("vocab_size", "num_classes", "labels_per_clip")
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), int) or meta[k] < 0 for k in ints) \
            or meta["vocab_size"] < 2:
        raise ArvidError(f"{path}: needs non-negative integers {', '.join(ints)} (vocab_size >= 2)")
    return meta


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise ArvidError(f"{path} is missing from the token dataset") from None
    except (OSError, ValueError, EOFError) as e:
        raise ArvidError(f"{path} is not a readable .npy array (truncated or not numpy): {e}") from None


__all__ = ["TOKEN_FOLDERS", "TokenDataset", "build_token_dataset", "write_token_dataset"]
