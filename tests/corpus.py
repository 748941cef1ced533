"""Builders shared by the bad-input tests: byte mutations for property tests, an audio-only file,
and a tiny untrained model folder. (pytest puts tests/ on sys.path: `from corpus import ...`.)"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from hypothesis import strategies as st

MUTATION = st.tuples(st.sampled_from(["flip", "truncate", "insert", "overwrite"]), st.floats(0, 1),
                     st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations) -> bytes:
    """Apply (kind, where in [0, 1], payload) mutations to `data`, one after the other."""
    for kind, where, payload in mutations:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data = data[:i] + bytes([data[i] ^ (payload[0] or 1)]) + data[i + 1:]
        elif kind == "truncate":
            data = data[:i]
        elif kind == "insert":
            data = data[:i] + payload + data[i:]
        else:
            data = data[:i] + payload + data[i + len(payload):]
    return data


def write_audio_only(path: Path, frames: int = 4) -> Path:
    """A valid mp4 with one AAC stream of `frames` x 1024 silent samples and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(frames):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def tiny_model_dir(root: Path, **tokenizer_overrides) -> Path:
    """An untrained tiny model folder at `root`: 16x16 frames, 4x4 latent tokens, τ = 2 (the tokenizer preset
    "tiny" with `tokenizer_overrides`, e.g. channels=3)."""
    from arvid.generator import Generator, GeneratorConfig
    from arvid.pipeline import Arvid
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny", **tokenizer_overrides))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4))
    Arvid(tok, gen, "cpu").save_pretrained(root)
    return root
