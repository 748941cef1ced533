"""How tokens are drawn: one value, `Sampling`, declared here once and passed unchanged to the sampler.

    s = Sampling.build({"temperature": 0.8}, recommended=model_sampling, labels=True)   # the one place it is made
    s = Sampling(temperature=0.8, top_k=50)                                             # or directly, every field set

Each setting is a field with its default, its "off" value, its valid range and its help text. Everything else
reads them from here: the sampler (`arvid.generator.sampler`), a model folder's `sampling.json`
(`Sampling.read_file`) and the CLI flags of `arvid generate`, `extend` and `eval generation` (made from
`Sampling.settings()`). The API keywords of `Arvid.generate` / `extend` / `stream` are named parameters (so help()
and IDEs list them), one per setting, which a test holds to `Sampling.settings()`. Adding a setting touches this
dataclass, the sampler, those three signatures, their tests and the docs, nothing else.

What a user gives (flags, keywords) may leave a setting unset (None); `build` fills it from the model's
recommended decoding (its sampling.json) and else from the default. Guidance follows labels, so a recommended
guidance applies only when labels are given; a guidance asked for without labels is refused where the labels are
known (`arvid.generator.sampler.check_request`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from arvid.errors import ArvidError

MAX_FILE_BYTES = 1 << 16


def _setting(default, *, off, valid: Callable[[Any], bool], rule: str, help: str, integer: bool = False):
    meta = {"off": off, "valid": valid, "rule": rule, "help": help, "integer": integer}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Sampling:
    temperature: float = _setting(
        1.0, off=None, valid=lambda v: v >= 0, rule=">= 0 (0: greedy)",
        help="sampling temperature; 0 is greedy")
    top_k: int = _setting(
        0, off=0, valid=lambda v: v >= 0, rule="a whole number >= 0 (0: off)", integer=True,
        help="sample among the K most likely tokens; 0 turns it off")
    top_p: float = _setting(
        1.0, off=1.0, valid=lambda v: 0 < v <= 1, rule="in (0, 1] (1: off)",
        help="sample among the most likely tokens holding probability mass P; 1 turns it off")
    min_p: float = _setting(
        0.0, off=0.0, valid=lambda v: 0 <= v <= 1, rule="in [0, 1] (0: off)",
        help="sample among the tokens at least P times as likely as the most likely one; 0 turns it off")
    guidance: float = _setting(
        1.0, off=1.0, valid=lambda v: v >= 0, rule=">= 0 (1: off)",
        help="classifier-free guidance scale with labels: 1 turns it off, higher follows the labels more")
    steps: int = _setting(
        8, off=None, valid=lambda v: 1 <= v <= 1024, rule="a whole number in [1, 1024]", integer=True,
        help="masked models: decoding steps per latent frame (each commits the most confident of the tokens "
             "still masked; fewer is faster)")
    choice_temperature: float = _setting(
        1.0, off=0.0, valid=lambda v: v >= 0, rule=">= 0 (0: off)",
        help="masked models: scale of the Gumbel noise added to each token's confidence when choosing which to "
             "commit, annealed to 0 over the steps; 0 commits the most confident first")
    reference_temperature: float = _setting(
        1.0, off=None, valid=lambda v: v >= 0, rule=">= 0 (0: greedy)",
        help="layered models: the sampling temperature of the reference picture (its positions take temperature); "
             "0 is greedy")
    reference_candidates: int = _setting(
        1, off=1, valid=lambda v: 1 <= v <= 64, rule="a whole number in [1, 64] (1: off)", integer=True,
        help="layered models: draw this many reference pictures per new clip and keep the first whose objects are "
             "drawn whole, as many as the model has layers; 1 keeps the first drawn")

    def __post_init__(self) -> None:
        for f in fields(self):
            check_value(f.name, getattr(self, f.name))

    # -- what a setting is

    @staticmethod
    def settings() -> tuple[str, ...]:
        """The names of the settings, in declaration order."""
        return tuple(f.name for f in fields(Sampling))

    @staticmethod
    def describe(name: str) -> dict:
        """A setting's metadata: default, off, rule, help, integer."""
        f = _FIELDS[name]
        return {"default": f.default, **{k: v for k, v in f.metadata.items() if k != "valid"}}

    def is_on(self, name: str) -> bool:
        """Whether setting `name` changes the draw (temperature always does)."""
        off = _FIELDS[name].metadata["off"]
        return off is None or getattr(self, name) != off

    def to_dict(self) -> dict:
        return asdict(self)

    # -- the one place a Sampling is made from what users give

    @classmethod
    def build(cls, given: Mapping[str, Any] | None = None, recommended: Mapping[str, Any] | None = None, *,
              labels: bool = True, name: Callable[[str], str] | None = None) -> "Sampling":
        """A Sampling from the settings a user gave (CLI flags, API keywords; None means unset), else the model's
        `recommended` ones (its sampling.json), else the defaults. `labels`: whether labels are given (the
        recommended guidance applies only then). `name` says how messages call a setting (e.g. "--top-p")."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(_FIELDS))
        if unknown:
            raise ArvidError(f"unknown sampling setting(s) {', '.join(unknown)}: the settings are "
                             f"{', '.join(_FIELDS)}")
        for key, value in given.items():
            check_value(key, value, name(key) if name else None)
        recommended = {k: v for k, v in (recommended or {}).items() if labels or k != "guidance"}
        values = {k: given[k] if given.get(k) is not None else recommended.get(k) for k in _FIELDS}
        return cls(**{k: v for k, v in values.items() if v is not None})

    @classmethod
    def read_file(cls, path: str | Path) -> dict:
        """A model folder's sampling.json -> {setting: value} (the settings it sets), every key and value checked."""
        from arvid.utils.jsonfile import read_json  # here: the package's helpers load torch, the settings need none

        path = Path(path)
        try:
            d = read_json(path, MAX_FILE_BYTES)
        except ArvidError as e:
            raise ArvidError(f"cannot read sampling settings: {e}") from None
        if not isinstance(d, dict) or set(d) - set(_FIELDS):
            raise ArvidError(f"{path}: expected a JSON object with some of {', '.join(_FIELDS)}, got "
                             f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
        try:
            for key, value in d.items():
                check_value(key, value)
        except ArvidError as e:
            raise ArvidError(f"{path}: {e}") from None
        return {k: v for k, v in d.items() if v is not None}


_FIELDS = {f.name: f for f in fields(Sampling)}


def check_value(key: str, value, name: str | None = None) -> None:
    """ArvidError unless `value` is None or a valid value of setting `key`; `name` is how the message calls it
    (default: the setting's name). NaN and infinities are never valid; a whole-number setting takes integers."""
    if value is None:
        return
    meta = _FIELDS[key].metadata
    label = name or key.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (meta["integer"] and not isinstance(value, int)):
        raise ArvidError(f"{label} must be {'a whole number' if meta['integer'] else 'a number'} "
                         f"{meta['rule']}, got {value!r}")
    if (isinstance(value, float) and not math.isfinite(value)) or not meta["valid"](value):
        digits = str(abs(value)) if isinstance(value, int) else ""
        shown = f"a whole number of {len(digits)} digits" if len(digits) > 20 else value
        raise ArvidError(f"{label} must be {meta['rule']}, got {shown}")


MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed


def check_seed(seed, name: str = "seed") -> int:
    """`seed` as an int, or ArvidError naming it (`name`: seed, or the flag --seed): a whole number in [0, MAX_SEED]
    (not a bool, a float or text: 1.5 would draw the same clip as 1)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ArvidError(f"{name} must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    return int(seed)


__all__ = ["MAX_SEED", "Sampling", "check_seed", "check_value"]
