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

    files = load_model_files(path, KIND)  # config, header and weights checked against tokenizer_layout
    config = TokenizerConfig.from_dict(files.config, source=str(files.folder / CONFIG_FILE))
    tok = Tokenizer(config)
    try:
        load_state(tok, files)
    except RuntimeError as e:  # pragma: no cover - check_state_dict catches names and shapes first
        raise ArvidError(f"cannot load {files.folder}: {e}") from None
    return tok.to(resolve_device(device)).eval()


def tokenizer_layout(config: TokenizerConfig) -> dict[str, torch.Tensor]:
    """The state dict of `Tokenizer(config)` without allocating its weights.

    The encoder and decoder are built on the meta device. The quantizer is built on the CPU when it
    is FSQ: vector-quantize-pytorch reads FSQ's buffers (`.item()`) while building it, which a meta
    tensor cannot do; its only tensors are the implicit codebook, bounded by the config (2^20 codes).
    """
    from arvid.tokenizer.model import ContextNet, Decoder, Encoder
    from arvid.tokenizer.quantize import Quantizer

    with torch.device("meta"):
        parts = {"encoder": Encoder(config), "decoder": Decoder(config)}
        if config.context:
            parts["context"] = ContextNet(config)
    with torch.device("cpu" if config.quantizer == "fsq" else "meta"):
        parts["quantizer"] = Quantizer(config)
    return {f"{name}.{key}": t for name in ("encoder", "quantizer", "decoder", "context") if name in parts
            for key, t in parts[name].state_dict().items()}
