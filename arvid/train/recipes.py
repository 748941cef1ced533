"""Training recipes: named sets of options sized to a budget, for `arvid train tokenizer|generator --recipe NAME`.

A recipe sets the model size, the clip length, the steps, the batch and the checkpoint and evaluation
intervals together; any option given on the command line overrides the recipe's value. `--recipe FILE.toml`
reads one from a file with a `[tokenizer]` and/or a `[generator]` table of option names and values:

    [tokenizer]
    preset = "mnist"
    frames = 9
    steps = 1500

Each key is checked like the command line's own option (its name, type and choices), so a mistake is one line
naming the key. Torch-free: `--help` lists the recipes before torch loads.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from arvid.errors import ArvidError

# cpu-hour, measured on 2 CPU cores with one torch thread: the mnist tokenizer takes 0.71 s a step (8 clips of
# 9 frames of 64x64), this generator 0.78 s (16 windows of 7 latent frames of 8x8 tokens).
RECIPES: dict[str, dict] = {
    "cpu-hour": {
        "about": "a small model on 64x64 frames in about an hour on 2 CPU cores: the tokenizer about 25 minutes, "
                 "the generator about 25 more, tokenizing included",
        "tokenizer": {"preset": "mnist", "frames": 9, "size": 64, "batch_size": 8, "steps": 2000, "lr": 1e-3,
                      "warmup": 100, "min_lr_ratio": 0.1, "ckpt_every": 250, "ckpt_minutes": 5.0, "eval_every": 250},
        "generator": {"preset": "mnist", "n_layer": 4, "d_model": 128, "n_head": 4, "n_kv_head": 2,
                      "mlp_hidden": 384, "window": 4, "sinks": 1, "train_frames": 7, "clip_frames": 17, "size": 64,
                      "clips": 2000, "eval_clips": 64, "batch_size": 16, "steps": 1600, "lr": 1e-3, "warmup": 100,
                      "min_lr_ratio": 0.1, "ckpt_every": 200, "ckpt_minutes": 5.0, "eval_every": 200,
                      "eval_windows": 32},
    },
    "gpu": {
        "about": "larger models on 128x128 frames for one GPU: a 4x8x8 tokenizer with 64,000 codes and the "
                 "small generator",
        "tokenizer": {"preset": "base", "frames": 17, "size": 128, "batch_size": 16, "steps": 20000, "lr": 5e-4,
                      "warmup": 500, "min_lr_ratio": 0.1, "ckpt_every": 1000, "ckpt_minutes": 15.0,
                      "eval_every": 1000, "eval_clips": 16},
        "generator": {"preset": "small", "train_frames": 11, "clip_frames": 49, "size": 128, "clips": 20000,
                      "eval_clips": 256, "batch_size": 32, "steps": 20000, "lr": 6e-4, "warmup": 500,
                      "min_lr_ratio": 0.1, "ckpt_every": 1000, "ckpt_minutes": 15.0, "eval_every": 1000},
    },
}

KINDS = ("tokenizer", "generator")
NOT_IN_RECIPES = ("out", "resume", "recipe", "help", "init", "tokens", "eval_tokens", "tokenizer")  # per run
_MAX_BYTES = 1 << 20


def recipe_help(kind: str) -> str:
    """--help's text for --recipe: each named recipe, what it is for and what it sets for `kind`."""
    shown = "; ".join(f"{name}: {r['about']} (sets {_flags(r[kind])})" for name, r in RECIPES.items())
    return (f"set the model size, clip length, steps and checkpoint interval together: a name ({shown}), or a TOML "
            f"file with a [{kind}] table of option names and values; options given override the recipe's")


def _flags(values: dict) -> str:
    return ", ".join(f"--{k.replace('_', '-')} {_show(v)}" for k, v in values.items())


def _show(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def recipe_values(value: str, kind: str, parser: argparse.ArgumentParser) -> dict:
    """The option values (argparse destinations) that recipe `value`, a name or a TOML file, sets for `kind`.
    ArvidError, in one line naming the recipe and the key, for anything that is not a valid option value."""
    if kind not in KINDS:
        raise ArvidError(f"--recipe is for `arvid train tokenizer` and `arvid train generator`, not {kind}")
    if value in RECIPES:
        return dict(RECIPES[value][kind])
    path = Path(value).expanduser()
    if path.suffix.lower() != ".toml" or not path.is_file():
        raise ArvidError(f"--recipe {value!r} is neither a recipe ({', '.join(RECIPES)}) nor a .toml file that exists")
    table = _read_toml(path).get(kind)
    if table is None:
        raise ArvidError(f"--recipe {path} has no [{kind}] table: add one with the options of `arvid train {kind}`")
    if not isinstance(table, dict):
        raise ArvidError(f"--recipe {path}: {kind} must be a table ([{kind}]) of option names and values")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in NOT_IN_RECIPES}
    return {dest: _checked(path, kind, key, v, actions) for key, v in table.items()
            for dest in [key.replace("-", "_")]}


def _read_toml(path: Path) -> dict:
    import tomllib

    try:
        if path.stat().st_size > _MAX_BYTES:
            raise ArvidError(f"--recipe {path} is larger than 1 MiB: not a recipe")
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ArvidError(f"--recipe {path} is not UTF-8 text: not a TOML recipe") from None
    except tomllib.TOMLDecodeError as e:
        raise ArvidError(f"--recipe {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ArvidError(f"--recipe {path} cannot be read: {e.strerror or e}") from None
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise ArvidError(f"--recipe {path}: unknown table or key {unknown[0]!r} at the top: a recipe has "
                         f"{' and '.join(f'[{k}]' for k in KINDS)} tables")
    return data


def _checked(path: Path, kind: str, key: str, v, actions: dict):
    """`v` as option `key` of `arvid train KIND` takes it; ArvidError naming the key otherwise."""
    dest = key.replace("-", "_")
    where = f"--recipe {path}: [{kind}] {key} = {v!r}"
    if dest in NOT_IN_RECIPES or dest not in actions:
        why = "is given per run, on the command line" if dest in NOT_IN_RECIPES else "is not an option of this kind"
        raise ArvidError(f"--recipe {path}: [{kind}] {key!r} {why} (see `arvid train {kind} --help`)")
    action = actions[dest]
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # a switch: true or false
        if not isinstance(v, bool):
            raise ArvidError(f"{where}: must be true or false")
        return v
    want = action.type or str
    if isinstance(v, bool) or not (isinstance(v, str) if want is str else isinstance(v, int) if want is int
                                   else isinstance(v, (int, float)) if want is float else isinstance(v, (str, int, float))):
        name = {str: "a string", int: "a whole number", float: "a number"}.get(want, "a value")
        raise ArvidError(f"{where}: must be {name}, as --{key.replace('_', '-')} takes")
    if want is float and not math.isfinite(v):
        raise ArvidError(f"{where}: must be a finite number")
    v = want(v) if want in (int, float, str) else want(str(v))
    if action.choices is not None and v not in action.choices:
        raise ArvidError(f"{where}: must be one of {', '.join(map(str, action.choices))}")
    return v


__all__ = ["RECIPES", "recipe_help", "recipe_values"]
