"""The decoding flags of `arvid generate`, `extend` and `eval generation`, made from `Sampling`'s fields.

Each setting of `arvid.generator.sampling.Sampling` becomes a flag (`top_k` -> `--top-k`) with its help text,
type and default from the dataclass: a new setting appears here without an edit. A flag left out is None
(unset), which `Sampling.build` fills from the model's recommended decoding, else the default.
"""

from __future__ import annotations

import argparse


def add_sampling_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from arvid.generator.sampling import Sampling

    for name in Sampling.settings():
        d = Sampling.describe(name)
        parser.add_argument(flag(name), type=int if d["integer"] else float, default=None,
                            help=f"{d['help']} (default: the model's recommended value, else {d['default']:g})")


def given(args: argparse.Namespace) -> dict:
    """The decoding settings the command line gave: {setting: value or None}."""
    from arvid.generator.sampling import Sampling

    return {name: getattr(args, name) for name in Sampling.settings()}


def flag(name: str) -> str:
    """The flag of a setting: top_k -> --top-k."""
    return "--" + name.replace("_", "-")
