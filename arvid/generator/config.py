"""The generator's configuration: one typed dataclass, named presets, validation of untrusted input.

Token layout. A clip of latent tokens (t, h, w) becomes one sequence of N = t·F tokens, frame after
frame, raster order inside a frame (F = h·w tokens per latent frame). Position p is latent frame
p // F, row (p % F) // w, column p % w. Two decoding kinds read it:

raster   Slot p predicts token x_p from the tokens before it, one at a time: its input is the previous
         token x_{p-1} (slot 0 gets a begin-of-clip token, id `vocab_size`). Slot p sees the slots of
         the last `window_frames` latent frames (p - j < W·F, token-causal) plus the `sink_frames` first
         latent frames (j < s·F).
masked   A latent frame's F tokens are predicted together, by iterative masked decoding (MaskGIT):
         its inputs are its tokens with some replaced by the mask token (id `vocab_size`), and it sees
         all of its own frame, the W - 1 latent frames before it (frame-causal) and the sink frames.
         Earlier frames are seen as they were decoded (clean), through the same KV cache.

The window and sinks hold in training and in generation alike. Any s works with any W, s > W included:
the mask is the union of the two sets, and the sink rotation (rope.sink_shift) never overlaps the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from arvid.errors import ArvidError

DECODINGS = ("raster", "masked")


@dataclass(frozen=True)
class GeneratorConfig:
    vocab_size: int = 1024  # codebook size of the tokenizer
    latent_h: int = 8  # h: latent rows per frame
    latent_w: int = 8  # w: latent columns per frame
    n_layer: int = 8
    n_head: int = 8  # nh
    n_kv_head: int = 4  # nh_kv (grouped-query attention)
    d_model: int = 384
    mlp_hidden: int = 1024  # SwiGLU hidden width
    window_frames: int = 8  # W: latent frames each token attends to (its own included)
    sink_frames: int = 1  # s: first latent frames kept visible for ever (0: no sinks)
    num_classes: int = 0  # label classes (0: unconditional)
    labels_per_clip: int = 0  # k: labels per clip (Moving MNIST: two digits)
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    decoding: str = "raster"  # raster (token by token) or masked (a frame at a time, MaskGIT); see above

    def __post_init__(self) -> None:
        validate(self)

    # -- derived sizes

    @property
    def head_size(self) -> int:  # hs
        return self.d_model // self.n_head

    @property
    def frame_tokens(self) -> int:  # F
        return self.latent_h * self.latent_w

    @property
    def window(self) -> int:  # tokens a slot sees behind it, itself included
        return self.window_frames * self.frame_tokens

    @property
    def sinks(self) -> int:  # sink tokens
        return self.sink_frames * self.frame_tokens

    @property
    def bos_token(self) -> int:  # raster: the input of slot 0
        return self.vocab_size

    @property
    def mask_token(self) -> int:  # masked: a token not decided yet (the same embedding row as bos_token)
        return self.vocab_size

    @property
    def masked(self) -> bool:
        return self.decoding == "masked"

    @property
    def frame(self) -> int:
        """The attention's frame: 1 (token-causal) for raster, F (frame-causal) for masked."""
        return self.frame_tokens if self.masked else 1

    @property
    def decode_chunk(self) -> int:
        """Most positions one cached decode call writes: a prefill chunk of 16 tokens (raster), a whole frame
        (masked). The KV cache's ring holds the window plus this, less one."""
        return self.frame_tokens if self.masked else 16

    @property
    def null_label(self) -> int:  # the "no label" class, for classifier-free guidance
        return self.num_classes

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0 and self.labels_per_clip > 0

    # -- construction

    @classmethod
    def from_name(cls, name: str, **overrides) -> "GeneratorConfig":
        if name not in PRESETS:
            raise ArvidError(f"unknown generator preset {name!r}: use one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "GeneratorConfig":
        """Build from untrusted JSON: unknown keys, missing keys and wrong types raise ArvidError."""
        if not isinstance(data, dict):
            raise ArvidError(f"{source}: the generator config must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        if "decoding" not in data:  # files written before the masked kind existed are raster models
            data = {**data, "decoding": "raster"}
        unknown = sorted(set(data) - set(known))
        missing = sorted(set(known) - set(data))
        if unknown or missing:
            raise ArvidError(f"{source}: generator config has unknown keys {unknown} and lacks keys {missing}; "
                             "it was written by another program or edited")
        values = {}
        for name, f in known.items():
            v = data[name]
            if f.type in ("str", str):
                if not isinstance(v, str):
                    raise ArvidError(f"{source}: generator config field {name!r} must be a string, got {v!r}")
                values[name] = v
                continue
            want = float if f.type in ("float", float) else int
            ok = isinstance(v, (int, float)) if want is float else isinstance(v, int)
            if not ok or isinstance(v, bool):
                raise ArvidError(f"{source}: generator config field {name!r} must be {want.__name__}, got {v!r}")
            values[name] = want(v)
        try:
            return cls(**values)
        except ArvidError as e:  # __post_init__ knows the values, not where they came from
            raise ArvidError(f"{source}: {e}") from None


_LIMITS = {  # name: (min, max) of the integer fields, to refuse absurd sizes before allocating
    "vocab_size": (2, 1 << 20), "latent_h": (1, 1024), "latent_w": (1, 1024), "n_layer": (1, 256),
    "n_head": (1, 256), "n_kv_head": (1, 256), "d_model": (8, 1 << 15), "mlp_hidden": (1, 1 << 17),
    "window_frames": (1, 1 << 14), "sink_frames": (0, 1024), "num_classes": (0, 1 << 20),
    "labels_per_clip": (0, 64),
}


def validate(c: GeneratorConfig) -> None:
    bad = [f"{n}={getattr(c, n)} (allowed {lo}..{hi})" for n, (lo, hi) in _LIMITS.items()
           if not lo <= getattr(c, n) <= hi]
    if c.d_model % max(c.n_head, 1) or c.n_head % max(c.n_kv_head, 1):
        bad.append(f"d_model={c.d_model}, n_head={c.n_head}, n_kv_head={c.n_kv_head} "
                   "(d_model must divide into n_head heads, n_head into n_kv_head groups)")
    elif (c.d_model // c.n_head) % 2 or c.d_model // c.n_head < 6:
        bad.append(f"head size {c.d_model // c.n_head} (must be even and >= 6 for 3D rotary)")
    if (c.num_classes > 0) != (c.labels_per_clip > 0):
        bad.append(f"num_classes={c.num_classes}, labels_per_clip={c.labels_per_clip} (both 0 or both > 0)")
    if c.decoding not in DECODINGS:
        bad.append(f"decoding={c.decoding!r} (one of {', '.join(DECODINGS)})")
    elif c.decoding == "masked":
        from arvid.kernels.api import MAX_DECODE_QUERIES  # only here: a raster config (the presets) needs no torch

        if c.latent_h * c.latent_w > MAX_DECODE_QUERIES:
            bad.append(f"decoding='masked' with {c.latent_h}x{c.latent_w} tokens per latent frame (a masked model "
                       f"decodes a whole frame at once: at most {MAX_DECODE_QUERIES} tokens)")
    if not 1 < c.rope_base < math.inf or not 0 < c.norm_eps < 1:
        bad.append(f"rope_base={c.rope_base}, norm_eps={c.norm_eps} (rope_base finite and > 1, 0 < norm_eps < 1)")
    if bad:
        raise ArvidError("invalid generator config: " + "; ".join(bad))


PRESETS: dict[str, GeneratorConfig] = {
    # for tests: 4x4 tokens per frame, a window of 3 frames, one sink frame
    "tiny": GeneratorConfig(vocab_size=32, latent_h=4, latent_w=4, n_layer=2, n_head=4, n_kv_head=2,
                            d_model=32, mlp_hidden=64, window_frames=3, sink_frames=1),
    # Moving MNIST at 64x64 through an 8x spatial tokenizer: 8x8 tokens per latent frame
    "mnist": GeneratorConfig(vocab_size=1024, latent_h=8, latent_w=8, n_layer=6, n_head=8, n_kv_head=4,
                             d_model=256, mlp_hidden=704, window_frames=6, sink_frames=1),
    "small": GeneratorConfig(),
    "base": GeneratorConfig(n_layer=12, n_head=12, n_kv_head=4, d_model=768, mlp_hidden=2048,
                            window_frames=8),
}

__all__ = ["DECODINGS", "PRESETS", "GeneratorConfig", "validate"]
