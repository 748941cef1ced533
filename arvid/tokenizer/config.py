"""The tokenizer's typed configuration and its named presets.

One dataclass holds every setting of the model (and of its reconstruction loss); `config.json`
beside the weights is this dataclass as JSON, read back field by field with clear errors.

    cfg = TokenizerConfig.preset("mnist")
    cfg = TokenizerConfig.preset("tiny", temporal_factor=4)   # a preset with overrides
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field

from arvid.errors import ArvidError

TEMPORAL_FACTORS = (1, 2, 4)
SPATIAL_FACTORS = (4, 8, 16)
PATCHES = (1, 2, 4)
QUANTIZERS = ("fsq", "lfq", "vq")


@dataclass(frozen=True)
class TokenizerConfig:
    channels: int = 1  # C: 1 (grayscale) or 3 (RGB)
    temporal_factor: int = 2  # τ: frames per latent frame after the first
    spatial_factor: int = 8  # pixels per latent token along H and W
    patch: int = 2  # pixels folded into channels at the input; the rest is strided convolutions
    width: int = 32  # channels of the first level; doubles at each downsampling, up to max_width
    max_width: int = 128
    depth: int = 1  # residual blocks per resolution level
    latent_depth: int = 2  # residual blocks at the latent resolution
    temporal_kernel: int = 3  # causal kernel length in time of the residual blocks (1: frame by frame)
    warp: bool = False  # decoder: each frame blends its own prediction with the previous frame, moved by a predicted flow
    context: bool = False  # conditional coding: encoder and decoder both see the decoder's previous output frame
    quantizer: str = "fsq"  # fsq | lfq | vq
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ: levels of each latent channel (codebook = product)
    num_codes: int = 1024  # LFQ (a power of two) and VQ codebook size
    vq_dim: int = 8  # VQ: size of a code vector
    vq_decay: float = 0.99  # VQ: EMA decay of the codebook
    entropy_weight: float = 0.1  # LFQ: weight of the entropy loss (keeps the codebook in use)
    commitment_weight: float = 0.25  # LFQ/VQ: weight of the commitment loss
    l1_weight: float = 0.2  # reconstruction loss = l1_weight·|x - x̂| + l2_weight·(x - x̂)²
    l2_weight: float = 1.0
    notes: dict = field(default_factory=dict, compare=False)  # free-form provenance (dataset, run)

    def __post_init__(self):
        _validate(self)

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels) if self.quantizer == "fsq" else self.num_codes

    @property
    def latent_dim(self) -> int:
        """Channels of the latent the quantizer sees."""
        if self.quantizer == "fsq":
            return len(self.levels)
        if self.quantizer == "lfq":
            return int(math.log2(self.num_codes))
        return self.vq_dim

    @property
    def num_down(self) -> int:
        """Strided 2x downsamplings after the input patch."""
        return int(math.log2(self.spatial_factor // self.patch))

    @property
    def level_widths(self) -> tuple[int, ...]:
        """Channels at each resolution level, from the input level down to the latent level."""
        return tuple(min(self.width * 2**i, self.max_width) for i in range(self.num_down + 1))

    def applicable(self) -> dict:
        """The settings that apply to this tokenizer, for people to read: the quantizer's own settings only (FSQ
        has levels, LFQ and VQ a number of codes...), and the codebook size they make."""
        d = self.to_dict()
        own = {"fsq": ("levels",), "lfq": ("num_codes", "entropy_weight", "commitment_weight"),
               "vq": ("num_codes", "vq_dim", "vq_decay", "commitment_weight")}[self.quantizer]
        for name in {"levels", "num_codes", "entropy_weight", "commitment_weight", "vq_dim", "vq_decay"} - set(own):
            d.pop(name)
        return {**d, "codebook_size": self.codebook_size}

    def fingerprint(self) -> str:
        """A short hash of every setting that changes what codes mean: not the notes, and not `warp`, which
        only changes how the decoder renders codes (a decoder trained further with it reads the same codes).
        With `context` on, the encoder reads the decoder's output, so the decoder (warp included) decides the
        codes too; off, `context` is left out, so fingerprints made before it existed stay the same."""
        d = self.to_dict()
        d.pop("notes")
        if not self.context:
            d.pop("context")
            d.pop("warp")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    # ---- presets and (de)serialisation -----------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides) -> "TokenizerConfig":
        if name not in PRESETS:
            raise ArvidError(f"unknown tokenizer preset {name!r}: use one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides}, source=f"preset {name!r}")

    def replace(self, **changes) -> "TokenizerConfig":
        return self.from_dict({**self.to_dict(), **changes}, source="config")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config.json") -> "TokenizerConfig":
        """Build from a dict, checking every key and type; ArvidError names `source` and the field."""
        if not isinstance(d, dict):
            raise ArvidError(f"{source}: expected a JSON object of tokenizer settings, got {type(d).__name__}")
        if d.get("motion_search", None) == 0:  # a setting of earlier releases, always off in shipped files
            d = {k: v for k, v in d.items() if k != "motion_search"}
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ArvidError(f"{source}: unknown tokenizer setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        hints = typing.get_type_hints(cls)
        values = {name: _coerce(source, name, value, hints[name]) for name, value in d.items()}
        try:
            return cls(**values)
        except ArvidError as e:  # __post_init__ knows the values, not where they came from
            raise ArvidError(f"{source}: {e}") from None


def _coerce(source: str, name: str, value, hint):
    """Check `value` against the field type; return it in the dataclass's form (lists -> tuples)."""
    def bad(expected: str):
        return ArvidError(f"{source}: tokenizer setting {name!r} must be {expected}, got {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise bad("an object")
        return dict(value)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad("a list of integers")
        return tuple(value)
    raise AssertionError(f"unhandled type {hint} for {name}")  # pragma: no cover


def _validate(c: TokenizerConfig) -> None:
    def bad(msg: str):
        raise ArvidError(f"invalid tokenizer config: {msg}")

    if c.channels not in (1, 3):
        bad(f"channels must be 1 or 3, got {c.channels}")
    if c.temporal_factor not in TEMPORAL_FACTORS:
        bad(f"temporal_factor must be one of {TEMPORAL_FACTORS}, got {c.temporal_factor}")
    if c.spatial_factor not in SPATIAL_FACTORS:
        bad(f"spatial_factor must be one of {SPATIAL_FACTORS}, got {c.spatial_factor}")
    if c.patch not in PATCHES or c.patch > c.spatial_factor:
        bad(f"patch must be one of {PATCHES} and at most spatial_factor={c.spatial_factor}, got {c.patch}")
    for name in ("width", "max_width"):
        if not 4 <= getattr(c, name) <= 4096 or getattr(c, name) % 4:
            bad(f"{name} must be a multiple of 4 between 4 and 4096, got {getattr(c, name)}")
    if c.max_width < c.width:
        bad(f"max_width ({c.max_width}) must be at least width ({c.width})")
    if not 0 <= c.depth <= 16 or not 0 <= c.latent_depth <= 16:
        bad(f"depth and latent_depth must be between 0 and 16, got {c.depth} and {c.latent_depth}")
    if not 1 <= c.temporal_kernel <= 7:
        bad(f"temporal_kernel must be between 1 and 7, got {c.temporal_kernel}")
    if c.quantizer not in QUANTIZERS:
        bad(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {c.quantizer!r}")
    if c.quantizer == "fsq" and (not 1 <= len(c.levels) <= 16 or any(not 3 <= v <= 256 for v in c.levels)):
        bad(f"FSQ levels must be 1 to 16 integers between 3 and 256, got {list(c.levels)}")
    if c.quantizer == "fsq" and math.prod(c.levels) > 2**20:  # FSQ holds its whole codebook in memory
        bad(f"FSQ levels {list(c.levels)} make {math.prod(c.levels)} codes, over 2^20: use fewer or smaller levels")
    if c.quantizer == "lfq" and (c.num_codes < 2 or c.num_codes & (c.num_codes - 1) or c.num_codes > 2**24):
        bad(f"LFQ num_codes must be a power of two between 2 and 2^24, got {c.num_codes}")
    if c.quantizer == "vq" and (not 2 <= c.num_codes <= 2**20 or not 1 <= c.vq_dim <= 1024):
        bad(f"VQ needs 2 <= num_codes <= 2^20 and 1 <= vq_dim <= 1024, got {c.num_codes} and {c.vq_dim}")
    if not 0.0 < c.vq_decay < 1.0:
        bad(f"vq_decay must be between 0 and 1, got {c.vq_decay}")
    for name in ("entropy_weight", "commitment_weight", "l1_weight", "l2_weight"):
        if not 0 <= getattr(c, name) < math.inf:
            bad(f"{name} must be a finite number >= 0, got {getattr(c, name)}")
    if c.l1_weight == 0 and c.l2_weight == 0:
        bad("l1_weight and l2_weight cannot both be 0")


PRESETS: dict[str, dict] = {
    # For tests: a few thousand parameters, runs in milliseconds.
    "tiny": dict(channels=1, temporal_factor=2, spatial_factor=4, patch=1, width=8, max_width=16, depth=1,
                 latent_depth=1, temporal_kernel=2, levels=[5, 5]),
    # Moving MNIST 64x64: 8x8 tokens per latent frame, τ=2, 240 FSQ codes (~0.065 bits per pixel at 17
    # frames, where H.264 runs out of room); small enough to train on one CPU thread in an hour.
    "mnist": dict(channels=1, temporal_factor=2, spatial_factor=8, patch=2, width=32, max_width=96, depth=1,
                  latent_depth=2, temporal_kernel=3, levels=[8, 6, 5]),
    # RGB video: 4x8x8 compression and 64,000 FSQ codes (the MAGVIT-v2 / Cosmos shape), for a GPU.
    "base": dict(channels=3, temporal_factor=4, spatial_factor=8, patch=2, width=64, max_width=256, depth=2,
                 latent_depth=4, temporal_kernel=3, levels=[8, 8, 8, 5, 5, 5]),
}
