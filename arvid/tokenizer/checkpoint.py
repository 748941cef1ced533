"""Tokenizer folders: model.safetensors + config.json through the training engine's model files.

A training run's folder is also a tokenizer folder (its top level holds the latest weights and
config), so `Tokenizer.from_pretrained(run_dir)` loads a run directly.
"""

from __future__ import annotations

import os

import torch

from arvid.errors import ArvidError
from arvid.tokenizer.config import TokenizerConfig

KIND = "tokenizer"


def save_tokenizer(tokenizer, path: str | os.PathLike) -> None:
    from arvid.train.checkpoint import save_model

    save_model(path, tokenizer, tokenizer.config.to_dict(), KIND)


def load_tokenizer(path: str | os.PathLike, device: str | torch.device | None = "cpu"):
    from arvid.tokenizer.model import Tokenizer
    from arvid.train.checkpoint import CONFIG_FILE, load_model_files, load_state
    from arvid.utils.device import resolve_device

    files = load_model_files(path, KIND)
    config = TokenizerConfig.from_dict(files.config, source=str(files.folder / CONFIG_FILE))
    tok = Tokenizer(config)
    try:
        load_state(tok, files)
    except RuntimeError as e:  # pragma: no cover - check_state_dict catches names and shapes first
        raise ArvidError(f"cannot load {files.folder}: {e}") from None
    return tok.to(resolve_device(device)).eval()
