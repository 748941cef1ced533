"""Model files and training checkpoints: safetensors + JSON only, every file written atomically.

A model folder holds `model.safetensors` (the weights) and `config.json`
(`{"kind", "arvid_version", "config": {...}}`, what is needed to rebuild the model). `save_model`
writes one; `load_model_files` reads one as untrusted input: any missing, truncated or garbage file
and any malformed config raise `ArvidError` naming the file. For the two kinds arvid knows
(tokenizer, generator) it then builds the model the config describes on the meta device (no
memory), refuses one over `MAX_MODEL_BYTES` of weights, and compares the safetensors header (names,
shapes, dtypes) with it, all before a tensor is read; after reading, non-finite weights are refused.
`check_state_dict` makes the same comparison against a built model.

Dtypes. A floating tensor of another precision (float16, bfloat16, float64 for a float32 weight) is
accepted and cast on load: that is how half-precision copies of a model are shared. Anything else
(integers or bool in place of floats, any other dtype for an integer buffer) is refused.

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
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import arvid
from arvid.errors import ArvidError
from arvid.utils.atomic import atomic_path, atomic_write_text

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"
_STATE_FILES = (MODEL_FILE, CONFIG_FILE, OPTIMIZER_FILE, STATE_FILE)  # publishing order: state last
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_MAX_JSON_BYTES = 64 << 20
_ENVELOPE_KEYS = {"kind", "arvid_version", "config"}
MAX_MODEL_BYTES = 16 << 30  # weights a config may describe: far above any arvid model, far below a config attack
_DTYPES = {  # safetensors header dtype -> torch dtype
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass
class ModelFiles:
    config: dict  # the model's own config (the "config" entry of config.json)
    state_dict: dict[str, torch.Tensor]  # on the CPU
    folder: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


# ---------------------------------------------------------------- model folders


def save_model(dir: str | os.PathLike, model_or_state_dict, config: dict, kind: str) -> None:
    """Write `dir/model.safetensors` and `dir/config.json`, each atomically (the folder is created)."""
    folder = Path(dir)
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise ArvidError(f"cannot create model folder {folder}: folder {folder.parent} does not exist") from None
    except (FileExistsError, NotADirectoryError):
        raise ArvidError(f"cannot write model folder {folder}: a file of that name exists") from None
    tensors = _saveable(_state_dict_of(model_or_state_dict))
    with atomic_path(folder / MODEL_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "arvid_kind": kind})
    atomic_write_text(folder / CONFIG_FILE, _envelope_json(config, kind))


def load_model_files(dir: str | os.PathLike, kind: str, *, max_bytes: int = MAX_MODEL_BYTES) -> ModelFiles:
    """Read and validate a model folder (or its `model.safetensors` / `config.json` path).

    Raises ArvidError naming the file when it is missing, not JSON, of another kind, has unknown
    keys, or when the safetensors file is truncated or not safetensors at all. For a tokenizer or
    generator, also when the config is invalid or describes over `max_bytes` of weights, when the
    header's tensors differ from the model's (checked before any tensor is read), or when a weight
    is NaN or infinite. Other kinds leave names and shapes to the caller: `check_state_dict`.
    """
    folder = _model_folder(dir)
    config = _read_envelope(folder / CONFIG_FILE, kind)
    expected = model_layout(kind, config, folder / CONFIG_FILE)
    if expected is not None:
        _check_size(expected, folder / CONFIG_FILE, max_bytes)
        _compare(expected, _read_header(folder / MODEL_FILE), folder / MODEL_FILE)
    state_dict, metadata = _read_safetensors(folder / MODEL_FILE)
    _check_finite(state_dict, folder / MODEL_FILE)
    return ModelFiles(config, state_dict, folder, metadata)


def model_layout(kind: str, config: dict, source: Path) -> dict[str, torch.Tensor] | None:
    """The tensors a `kind` model built from `config` holds, without allocating its weights (meta
    tensors, or small CPU ones); None for kinds arvid does not know. Config errors name `source`."""
    if kind == "generator":
        from arvid.generator import Generator, GeneratorConfig

        cfg = GeneratorConfig.from_dict(config, source=str(source))
        with torch.device("meta"):
            return Generator(cfg).state_dict()
    if kind == "tokenizer":
        from arvid.tokenizer.checkpoint import tokenizer_layout
        from arvid.tokenizer.config import TokenizerConfig

        return tokenizer_layout(TokenizerConfig.from_dict(config, source=str(source)))
    return None


def check_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path) -> None:
    """Raise ArvidError listing missing, unexpected, mis-shaped and wrongly typed tensors of `state_dict`."""
    _compare(model.state_dict(), {k: (tuple(v.shape), v.dtype) for k, v in state_dict.items()}, path)


def load_state(model: torch.nn.Module, files: ModelFiles) -> None:
    """`check_state_dict`, then copy the tensors into `model`."""
    check_state_dict(model, files.state_dict, (files.folder or Path(".")) / MODEL_FILE)
    model.load_state_dict(files.state_dict, strict=True)


# ---------------------------------------------------------------- training checkpoints


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
    state = {**state, "step": step, "kind": kind, "arvid_version": arvid.__version__, "optimizer": opt_meta}
    meta = {"format": "pt", "arvid_kind": kind, "arvid_step": str(step)}
    try:
        folder.parent.mkdir(exist_ok=True)
        with atomic_path(folder, is_dir=True) as tmp:
            save_file(_saveable(model.state_dict()), str(tmp / MODEL_FILE), metadata=meta)
            (tmp / CONFIG_FILE).write_text(_envelope_json(model_config, kind))
            save_file(_saveable(opt_tensors), str(tmp / OPTIMIZER_FILE), metadata=meta)
            (tmp / STATE_FILE).write_text(json.dumps(state, allow_nan=True))
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
    """Delete what a killed run left: temporary step folders and temporary top-level files."""
    out = Path(out_dir)
    root = out / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith("."):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    for name in _STATE_FILES:
        stem, suffix = name.split(".", 1)
        for p in out.glob(f".{stem}.*.tmp.{suffix}"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def load_checkpoint(folder: Path, kind: str) -> Checkpoint:
    """Read and validate one step folder written by `save_checkpoint`."""
    model = load_model_files(folder, kind)
    state = _read_json(folder / STATE_FILE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or "optimizer" not in state:
        raise ArvidError(f"{folder / STATE_FILE} is not an arvid trainer state (no step or optimizer entry)")
    m = _STEP_DIR.match(folder.name)
    if m and int(m.group(1)) != state["step"]:
        raise ArvidError(f"{folder / STATE_FILE} says step {state['step']} but its folder is {folder.name}")
    optimizer, _ = _read_safetensors(folder / OPTIMIZER_FILE)
    return Checkpoint(folder, model, optimizer, state)


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


# ---------------------------------------------------------------- helpers


def _state_dict_of(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        from arvid.train.distributed import unwrap

        return unwrap(obj).state_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"save_model takes a module or a state dict, not {type(obj).__name__}")


def _saveable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (tied weights get a copy each)."""
    out, seen = {}, set()
    for name, t in tensors.items():
        if not torch.is_tensor(t):
            raise TypeError(f"{name} is a {type(t).__name__}, not a tensor")
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or ptr == 0:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _envelope_json(config: dict, kind: str) -> str:
    if not isinstance(config, dict):
        raise TypeError(f"the model config must be a dict, not {type(config).__name__}")
    return json.dumps({"kind": kind, "arvid_version": arvid.__version__, "config": config}, indent=2, allow_nan=False)


def _model_folder(dir) -> Path:
    path = Path(dir)
    if path.is_file() and path.name in (MODEL_FILE, CONFIG_FILE):
        path = path.parent
    if not path.exists():
        raise ArvidError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ArvidError(f"{path} is not a model folder: give the folder holding {MODEL_FILE} and {CONFIG_FILE}")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise ArvidError(f"model folder {path} has no {name}: it is not an arvid model (or is incomplete)")
    return path


def _read_json(path: Path):
    if not path.is_file():
        raise ArvidError(f"{path} is missing")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise ArvidError(f"{path} is {path.stat().st_size} bytes, too large for a config file")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArvidError(f"{path} is not valid JSON ({e})") from None
    except RecursionError:
        raise ArvidError(f"{path} is not an arvid config: its JSON is nested too deeply to read "
                         "(a config is a flat object); copy or write it again") from None


def _read_envelope(path: Path, kind: str) -> dict:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ArvidError(f"{path} must hold a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - _ENVELOPE_KEYS)
    missing = sorted(_ENVELOPE_KEYS - set(data))
    if unknown or missing:
        raise ArvidError(f"{path}: " + "; ".join(
            s for s in (unknown and f"unknown keys {unknown}", missing and f"missing keys {missing}") if s
        ) + f" (expected exactly {sorted(_ENVELOPE_KEYS)})")
    if data["kind"] != kind:
        raise ArvidError(f"{path} describes a {data['kind']!r} model, not a {kind!r}: check the path")
    if not isinstance(data["arvid_version"], str):
        raise ArvidError(f"{path}: arvid_version must be a string")
    if not isinstance(data["config"], dict):
        raise ArvidError(f"{path}: config must be a JSON object")
    return data["config"]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise ArvidError(f"{path} is missing")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path), device="cpu"), metadata
    except Exception as e:  # the safetensors error type is not public; any failure means a bad file
        raise _unreadable(path, e) from None


def _read_header(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype | str]]:
    """Names, shapes and dtypes of a safetensors file, from its header alone (no tensor is read)."""
    if not path.is_file():
        raise ArvidError(f"{path} is missing")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            return {name: (tuple(s.get_shape()), _DTYPES.get(s.get_dtype(), s.get_dtype()))
                    for name, s in slices.items()}
    except Exception as e:  # the safetensors error type is not public; any failure means a bad file
        raise _unreadable(path, e) from None


def _compare(expected: dict[str, torch.Tensor], got: dict[str, tuple], path) -> None:
    """Raise ArvidError unless `got` (name: (shape, dtype)) has exactly the tensors of `expected`."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    both = [k for k in expected if k in got]
    shapes = [f"{k} (file {list(got[k][0])}, model {list(expected[k].shape)})"
              for k in both if got[k][0] != tuple(expected[k].shape)]
    dtypes = [f"{k} (file {_dtype_name(got[k][1])}, model {_dtype_name(expected[k].dtype)})"
              for k in both if not _castable(got[k][1], expected[k].dtype)]
    problems = [f"{label}: {_listing(items)}" for label, items in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("wrong shapes", shapes),
                 ("wrong dtypes", dtypes)) if items]
    if problems:
        raise ArvidError(
            f"{path} does not match the model built from its config.json; " + "; ".join(problems)
            + ". The weights belong to another model or were edited: use the files saved together"
        )


def _castable(got: torch.dtype | str, want: torch.dtype) -> bool:
    """The same dtype, or floats of another precision (cast on load); never integers for floats."""
    return got == want or (isinstance(got, torch.dtype) and got.is_floating_point and want.is_floating_point)


def _dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def _check_size(expected: dict[str, torch.Tensor], path: Path, max_bytes: int) -> None:
    nbytes = sum(t.numel() * t.element_size() for t in expected.values())
    if nbytes > max_bytes:
        raise ArvidError(
            f"{path} describes a model with {nbytes / 2**30:,.1f} GiB of weights, over the limit of "
            f"{max_bytes / 2**30:g} GiB: the config was edited or is not an arvid model; use the config.json "
            "saved with the weights"
        )


def _check_finite(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or infinite weights (a poisoned or diverged checkpoint), naming the first such tensor."""
    for name, t in state_dict.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise ArvidError(
                f"{path}: tensor {name} holds {n} NaN or infinite values: the weights are corrupt (a diverged "
                "or edited checkpoint); use an earlier checkpoint or train again"
            )


def _unreadable(path: Path, e: Exception) -> ArvidError:
    return ArvidError(
        f"{path} is not a readable safetensors file ({type(e).__name__}: {e}): it is truncated or corrupt, "
        "copy or train it again"
    )


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


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
