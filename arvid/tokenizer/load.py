"""Loading any tokenizer folder: a conv tokenizer (`arvid.tokenizer.model`) or a layered one
(`arvid.tokenizer.layered`), told apart by its config's "kind".

    tok = load_tokenizer(folder)      # Tokenizer | LayeredTokenizer: the same encode / decode / streams / sizes
"""

from __future__ import annotations

import os

import torch

from arvid.files import load_model_files, load_state
from arvid.tokenizer.config import TokenizerConfig
from arvid.tokenizer.layered import LayeredTokenizer, is_layered
from arvid.tokenizer.model import KIND, Tokenizer
from arvid.utils.device import resolve_device

AnyTokenizer = Tokenizer | LayeredTokenizer


def tokenizer_layout(config: dict, source: str = "config") -> dict[str, torch.Tensor]:
    return LayeredTokenizer.layout(config, source) if is_layered(config) else Tokenizer.layout(config, source)


def load_tokenizer(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> AnyTokenizer:
    """Load a tokenizer folder (or a training run folder) of either kind."""
    files = load_model_files(path, KIND, tokenizer_layout)
    if is_layered(files.config):
        return LayeredTokenizer.from_files(files, device)
    tok = Tokenizer(TokenizerConfig.from_dict(files.config, source=str(files.folder / "config.json")))
    load_state(tok, files)
    return tok.to(resolve_device(device)).eval()


__all__ = ["AnyTokenizer", "load_tokenizer", "tokenizer_layout"]
