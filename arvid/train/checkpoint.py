"""Training checkpoints: safetensors + JSON only, every file written atomically.

The model files themselves (`model.safetensors` + `config.json`, validated as untrusted input) are
`arvid.files`; a checkpoint adds the optimizer's tensors and the trainer's state beside them.

A training run's folder (`out_dir`) looks like this:

    out_dir/
      model.safetensors  config.json          the latest weights: a model folder, ready to load
      optimizer.safetensors  trainer_state.json   the latest optimizer tensors and trainer state
      checkpoints/step-00000500/             the committed checkpoint, the same four files

How a kill at any instant stays harmless: a checkpoint is first written whole into a temporary
folder `checkpoints/.step-00000500.*.tmp`, its files synced to disk, and then renamed to
`checkpoints/step-00000500` in one atomic `rename`. A step folder therefore exists complete or
not at all, and `--resume` reads the newest one: the weights, optimizer tensors, step and RNG
states in it always belong together. Only then are older step folders deleted and the four
top-level files refreshed, each by an atomic rename of a hard link (a copy where the file system
has no links, so no extra disk space otherwise), `trainer_state.json` last. A kill during that
refresh can leave the top-level files one checkpoint apart, but each is a complete file and resume
never reads them; the next resume sweeps leftover temporaries and refreshes them.

`optimizer.safetensors` holds the optimizer's per-parameter tensors under keys
`"{param index}.{name}"` (`0.exp_avg`, `0.step`, ...); its non-tensor values, the parameter
groups, the step, the training config, the per-process RNG states (base64 and lists) and the
metrics history live in `trainer_state.json`. Nothing is pickled, nothing is `torch.load`ed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from arvid.errors import ArvidError
from arvid.files import (CONFIG_FILE, MODEL_FILE, Layout, ModelFiles, envelope_json, load_model_files, read_json,
                         read_safetensors, saveable, write_safetensors)
from arvid.train.preview import CURVES_FILE, PREVIEW_FILE
from arvid.train.runlog import LOG_FILE
from arvid.train.tokens import TOKEN_FOLDERS
from arvid.utils.atomic import atomic_path, is_temporary
from arvid.version import __version__

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"
_STATE_FILES = (MODEL_FILE, CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE)  # publishing order: state last
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
RUN_FILES = (*_STATE_FILES, LOG_FILE, PREVIEW_FILE, CURVES_FILE)  # the files a run writes at its folder's top


@dataclass
class Checkpoint:
    folder: Path
    model: ModelFiles
    optimizer: dict[str, torch.Tensor]
    state: dict  # trainer_state.json


def checkpoint_folders(out_dir: str | os.PathLike) -> list[Path]:
    """Committed step folders of a run, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    folders = checkpoint_folders(out_dir)
    return folders[-1] if folders else None


def holds_checkpoint(out_dir: str | os.PathLike) -> bool:
    """True when `out_dir` has a step folder or any of the four checkpoint files."""
    out = Path(out_dir)
    return bool(checkpoint_folders(out)) or any((out / name).exists() for name in _STATE_FILES)


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    kind: str,
    model_config: dict,
    state: dict,
) -> Path:
    """Commit step folder `checkpoints/step-{step:08d}`, then prune and refresh the top level."""
    out = Path(out_dir)
    folder = out / CHECKPOINTS / f"step-{step:08d}"
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    state = {**state, "step": step, "kind": kind, "arvid_version": __version__, "optimizer": opt_meta}
    meta = {"format": "pt", "arvid_kind": kind, "arvid_step": str(step)}
    try:
        folder.parent.mkdir(exist_ok=True)
        with atomic_path(folder, is_dir=True) as tmp:
            write_safetensors(saveable(model.state_dict()), tmp / MODEL_FILE, meta)
            (tmp / CONFIG_FILE).write_text(envelope_json(model_config, kind))
            write_safetensors(saveable(opt_tensors), tmp / OPTIMIZER_FILE, meta)
            (tmp / STATE_FILE).write_text(json.dumps(_finite(state)))
            _fsync_folder(tmp)
        for old in checkpoint_folders(out)[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        publish(folder, out)
    except OSError as e:
        raise ArvidError(f"cannot write checkpoint {folder}: {e} (is the disk full or the folder read-only?)") from e
    return folder


def publish(folder: Path, out: Path) -> None:
    """Point the top-level files of `out` at checkpoint `folder` (hard links; trainer_state.json last)."""
    for name in _STATE_FILES:
        with atomic_path(out / name) as tmp:
            tmp.unlink()
            try:
                os.link(folder / name, tmp)
            except OSError:
                shutil.copyfile(folder / name, tmp)


def sweep_temporaries(out_dir: str | os.PathLike) -> None:
    """Delete what a killed run left in its folder: temporary step folders, temporary top-level files (the
    checkpoint's, log.csv's, the pictures'), and half-built token folders (`.tokens-train.XXXXXXXX.tmp`). Only
    names arvid's own writers make are touched (`arvid.utils.atomic.is_temporary`); a user's files never are."""
    out = Path(out_dir)
    root = out / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if _is_step_temporary(p):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    if not out.is_dir():
        return
    for p in out.iterdir():
        if any(is_temporary(p, name) for name in RUN_FILES) and not p.is_dir():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        elif any(is_temporary(p, name, is_dir=True) for name in TOKEN_FOLDERS) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _is_step_temporary(p: Path) -> bool:
    """Whether `p` is a step folder's temporary (`.step-00000500.XXXXXXXX.tmp`, or `.old`): a user's own hidden
    files in checkpoints/ (a .gitignore) are not."""
    step = p.name[1:].split(".")[0]
    return bool(_STEP_DIR.match(step)) and is_temporary(p, step, is_dir=True)


def saved_options(out_dir: str | os.PathLike) -> dict | None:
    """The command-line options the run in `out_dir` was started with (its latest checkpoint's), or None."""
    folder = latest_checkpoint(out_dir)
    if folder is None:
        return None
    state = check_state(read_json(folder / STATE_FILE), folder / STATE_FILE)
    options = state["train_config"].get("options")
    if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)
                                    and all(v is None or isinstance(v, (str, int, float, bool)) for v in options.values())):
        raise ArvidError(f"{folder / STATE_FILE}: train_config.options must map option names to plain values")
    return options


def load_checkpoint(folder: Path, kind: str, layout: Layout | None = None) -> Checkpoint:
    """Read and validate one step folder written by `save_checkpoint` (its model files checked against `layout`)."""
    model = load_model_files(folder, kind, layout)
    state = check_state(read_json(folder / STATE_FILE), folder / STATE_FILE)
    m = _STEP_DIR.match(folder.name)
    if m and int(m.group(1)) != state["step"]:
        raise ArvidError(f"{folder / STATE_FILE} says step {state['step']} but its folder is {folder.name}")
    optimizer, _ = read_safetensors(folder / OPTIMIZER_FILE)
    return Checkpoint(folder, model, optimizer, state)


def _finite(value):
    """A JSON-able value with NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def check_state(state, path: Path) -> dict:
    """Every field of a trainer_state.json, checked as untrusted input: its step, optimizer entry, training config,
    per-process RNG states and metrics history have the types and sizes arvid writes (ArvidError otherwise)."""
    def bad(what: str):
        return ArvidError(f"{path} is not an arvid trainer state: {what}; it was edited or written by another program")

    def number(x) -> bool:
        return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))

    if not isinstance(state, dict):
        raise bad("it is not a JSON object")
    if not isinstance(state.get("step"), int) or isinstance(state["step"], bool) or not 0 <= state["step"] < 1 << 40:
        raise bad(f"step must be a whole number >= 0, got {state.get('step')!r}")
    opt = state.get("optimizer")
    if not (isinstance(opt, dict) and isinstance(opt.get("param_groups"), list)
            and all(isinstance(g, dict) for g in opt["param_groups"]) and isinstance(opt.get("scalars", {}), dict)
            and all(number(v) for v in opt.get("scalars", {}).values())):
        raise bad("optimizer must hold a list of parameter groups and numeric scalars")
    if not isinstance(state.get("train_config", {}), dict):
        raise bad("train_config must be an object")
    state.setdefault("train_config", {})
    history = state.get("history", [])
    if not (isinstance(history, list) and all(isinstance(h, dict) and all(isinstance(k, str) and number(v)
                                                                           for k, v in h.items()) for h in history)):
        raise bad("history must be a list of {metric: number} objects")
    states = state.get("rng", [])
    if not isinstance(states, list) or not all(_rng_state_ok(r) for r in states):
        raise bad("rng must be a list of the random-number states arvid captures (torch, python, numpy, cuda)")
    return state


def _rng_state_ok(r) -> bool:
    """The shape of one process's RNG state (`arvid.train.rng.capture`)."""
    try:
        py, npy = r["python"], r["numpy"]
        return (isinstance(r["torch"], str) and len(r["torch"]) < 1 << 16 and (r["cuda"] is None or isinstance(r["cuda"], str))
                and isinstance(py, list) and len(py) == 3 and isinstance(py[0], int) and isinstance(py[1], list)
                and len(py[1]) == 625 and all(isinstance(x, int) and 0 <= x < 1 << 32 for x in py[1])
                and (py[2] is None or isinstance(py[2], float))
                and isinstance(npy, list) and len(npy) == 5 and npy[0] == "MT19937" and isinstance(npy[1], list)
                and len(npy[1]) == 624 and all(isinstance(x, int) and 0 <= x < 1 << 32 for x in npy[1])
                and isinstance(npy[2], int) and 0 <= npy[2] <= 624 and isinstance(npy[3], int) and isinstance(npy[4], float))
    except (KeyError, TypeError, IndexError):
        return False


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten `optimizer.state_dict()` into safetensors-ready tensors and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in sd["state"].items():
        for name, value in per_param.items():
            (tensors if torch.is_tensor(value) else scalars)[f"{index}.{name}"] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, path) -> None:
    """Inverse of `optimizer_tensors`, checked against the optimizer's parameters."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    current = optimizer.state_dict()["param_groups"]
    saved = meta.get("param_groups")
    if not isinstance(saved, list) or [len(g.get("params", ())) for g in saved] != [len(g["params"]) for g in current]:
        raise ArvidError(f"{path}: the optimizer state does not match the model's parameters (another model?)")
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta.get("scalars", {}).items()]:
        index, _, name = key.partition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise ArvidError(f"{path}: unexpected optimizer entry {key!r}")
        if torch.is_tensor(value) and value.ndim > 0 and value.shape != params[int(index)].shape:
            raise ArvidError(f"{path}: optimizer tensor {key} has shape {list(value.shape)}, "
                             f"its parameter {list(params[int(index)].shape)}")
        state.setdefault(int(index), {})[name] = value
    impl = ("fused", "foreach", "capturable", "differentiable")  # keep this run's implementation
    groups = [
        {**g, **{k: c[k] for k in impl if k in c}, **({"betas": tuple(g["betas"])} if "betas" in g else {}),
         "params": c["params"]}
        for g, c in zip(saved, current)
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _fsync_folder(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
