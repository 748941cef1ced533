"""Model files: one folder of `model.safetensors` + `config.json`, written atomically, read as untrusted input.

    save_model(folder, model, config_dict, kind)
    files = load_model_files(folder, kind, layout)      # checked before and after any tensor is read
    load_state(model, files)

A model folder holds `model.safetensors` (the weights) and `config.json`
(`{"kind", "arvid_version", "config": {...}}`, what is needed to rebuild the model). This module knows no
model kind: each model declares its own `layout(config, source)`, the tensors it would hold for a config (meta
tensors: no memory), and passes it in. `load_model_files` then refuses a config that describes over
`MAX_MODEL_BYTES` of weights and compares the safetensors header (names, shapes, dtypes) with the layout, all
before a tensor is read; after reading, non-finite weights are refused. Any missing, truncated or garbage file
and any malformed config raise `ArvidError` naming the file.

Dtypes. A floating tensor of another precision (float16, bfloat16, float64 for a float32 weight) is accepted
and cast on load: that is how half-precision copies of a model are shared. Anything else (integers or bool in
place of floats, any other dtype for an integer buffer) is refused. Nothing is pickled, nothing is
`torch.load`ed.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from arvid.errors import ArvidError
from arvid.utils import jsonfile
from arvid.utils.atomic import atomic_path, atomic_write_text
from arvid.utils import memory
from arvid.version import __version__

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MAX_JSON_BYTES = 64 << 20
MAX_MODEL_BYTES = 16 << 30  # weights a config may describe: far above any arvid model, far below a config attack
_ENVELOPE_KEYS = {"kind", "arvid_version", "config"}
_DTYPES = {  # safetensors header dtype -> torch dtype
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}

# (config dict, its source for messages) -> the model's tensors for that config, without their memory
Layout = Callable[[dict, str], dict[str, torch.Tensor]]


@dataclass
class ModelFiles:
    config: dict  # the model's own config (the "config" entry of config.json)
    state_dict: dict[str, torch.Tensor]  # on the CPU
    folder: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata


def save_model(dir: str | os.PathLike, model_or_state_dict, config: dict, kind: str) -> None:
    """Write `dir/model.safetensors` and `dir/config.json`, each atomically (the folder is created)."""
    folder = Path(dir)
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise ArvidError(f"cannot create model folder {folder}: folder {folder.parent} does not exist") from None
    except (FileExistsError, NotADirectoryError):
        raise ArvidError(f"cannot write model folder {folder}: a file of that name exists") from None
    tensors = saveable(state_dict_of(model_or_state_dict))
    try:
        with atomic_path(folder / MODEL_FILE) as tmp:
            write_safetensors(tensors, tmp, {"format": "pt", "arvid_kind": kind})
        atomic_write_text(folder / CONFIG_FILE, envelope_json(config, kind))
    except OSError as e:
        raise ArvidError(f"cannot write model folder {folder}: {e.strerror or e}; free some space or choose another "
                         "folder") from None


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors' save_file, with a failed write (a full disk) an OSError, as any other file's: safetensors raises
    its own SafetensorError, naming the system's error inside its text."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        found = re.search(r'code: (\d+).*?message: "([^"]*)"', str(e))
        if found is None:
            raise OSError(errno.EIO, f"cannot write {path.name} ({e})") from None
        raise OSError(int(found.group(1)), found.group(2)) from None


def load_model_files(dir: str | os.PathLike, kind: str, layout: Layout | None = None, *,
                     max_bytes: int = MAX_MODEL_BYTES) -> ModelFiles:
    """Read and validate a model folder (or its `model.safetensors` / `config.json` path).

    Raises ArvidError naming the file when it is missing, not JSON, of another kind, has unknown keys, or when
    the safetensors file is truncated or not safetensors at all. With a `layout`: also when the config is
    invalid (the layout's own error) or describes over `max_bytes` of weights, or when the header's tensors
    differ from the layout's (checked before any tensor is read). Always: when a weight is NaN or infinite.
    Without a layout the caller checks names and shapes against its model: `load_state`.
    """
    folder = model_folder(dir)
    config = read_envelope(folder / CONFIG_FILE, kind)
    if layout is not None:
        expected = layout(config, str(folder / CONFIG_FILE))
        _check_size(expected, folder / CONFIG_FILE, max_bytes)
        compare(expected, read_header(folder / MODEL_FILE), folder / MODEL_FILE)
    state_dict, metadata = read_safetensors(folder / MODEL_FILE)
    _check_finite(state_dict, folder / MODEL_FILE)
    return ModelFiles(config, state_dict, folder, metadata)


def check_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path) -> None:
    """Raise ArvidError listing missing, unexpected, mis-shaped and wrongly typed tensors of `state_dict`."""
    compare(model.state_dict(), {k: (tuple(v.shape), v.dtype) for k, v in state_dict.items()}, path)


def load_state(model: torch.nn.Module, files: ModelFiles) -> None:
    """`check_state_dict`, then copy the tensors into `model`."""
    check_state_dict(model, files.state_dict, (files.folder or Path(".")) / MODEL_FILE)
    model.load_state_dict(files.state_dict, strict=True)


def meta_layout(build: Callable[[], torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict of the module `build()` makes, built on the meta device (no memory for its weights)."""
    with torch.device("meta"):
        return build().state_dict()


# ---------------------------------------------------------------- reading and writing, shared with checkpoints


def state_dict_of(obj) -> dict[str, torch.Tensor]:
    """The tensors of a module (unwrapped from DistributedDataParallel) or a state dict."""
    if isinstance(obj, torch.nn.parallel.DistributedDataParallel):
        obj = obj.module
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"save_model takes a module or a state dict, not {type(obj).__name__}")


def saveable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def envelope_json(config: dict, kind: str) -> str:
    if not isinstance(config, dict):
        raise TypeError(f"the model config must be a dict, not {type(config).__name__}")
    return json.dumps({"kind": kind, "arvid_version": __version__, "config": config}, indent=2, allow_nan=False)


def model_folder(dir) -> Path:
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


def read_json(path: Path):
    return jsonfile.read_json(path, MAX_JSON_BYTES)


def read_envelope(path: Path, kind: str) -> dict:
    data = read_json(path)
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


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise ArvidError(f"{path} is missing")
    size = path.stat().st_size
    too_big = ArvidError(f"{path}: its {size / 2**20:,.1f} MiB of weights does not fit in the memory available to "
                         "arvid: free memory, raise the memory limit, or use a machine with more")
    free = memory.available_bytes()
    if free is not None and size > memory.HEADROOM * free:
        raise too_big
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path), device="cpu"), metadata
    except MemoryError:  # under a memory cap (ulimit -v, a container) the mapping fails: the file is fine
        raise too_big from None
    except Exception as e:  # the safetensors error type is not public; any other failure means a bad file
        raise _unreadable(path, e) from None


def read_header(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype | str]]:
    """Names, shapes and dtypes of a safetensors file, from its header alone (no tensor is read)."""
    if not path.is_file():
        raise ArvidError(f"{path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}
            return {name: (tuple(s.get_shape()), _DTYPES.get(s.get_dtype(), s.get_dtype()))
                    for name, s in slices.items()}
    except Exception as e:  # the safetensors error type is not public; any failure means a bad file
        raise _unreadable(path, e) from None


def compare(expected: dict[str, torch.Tensor], got: dict[str, tuple], path) -> None:
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
    """Refuse NaN or infinite weights (a poisoned or diverged checkpoint), naming the first such tensor; a wider
    float (float64) is checked as the float32 the model will hold (1e300 is finite, its float32 cast is not)."""
    for name, t in state_dict.items():
        if t.is_floating_point() and t.dtype == torch.float64:
            t = t.to(torch.float32)
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


__all__ = ["CONFIG_FILE", "MAX_MODEL_BYTES", "MODEL_FILE", "Layout", "ModelFiles", "check_state_dict",
           "load_model_files", "load_state", "meta_layout", "save_model"]
