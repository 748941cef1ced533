"""Which attention path runs: the Triton kernels (compiled on CUDA, or interpreted on any device
under TRITON_INTERPRET=1) or PyTorch's scaled_dot_product_attention with arvid's mask.

The choice, made at every call:
1. `use_backend(...)` context manager, when one is active;
2. else the environment variable ARVID_ATTENTION_BACKEND = auto | triton | pytorch;
3. "auto": on a GPU, the path measured fastest for the call's case class (`case_class`): a row of
   dispatch_table.json (made on a GPU by `python -m arvid.kernels.tune`), else the rule that SDPA runs
   what it can run without a dense mask (plain causal attention, one-token decoding) and the Triton
   kernels what it cannot (windows, sinks, frame-causal masks, several queries against a ring cache);
   the Triton kernels for any tensors when they were built under the interpreter; PyTorch otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import warnings
from pathlib import Path

import torch

from arvid.errors import ArvidError

BACKENDS = ("auto", "triton", "pytorch")
ENV_VAR = "ARVID_ATTENTION_BACKEND"

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("arvid_attention_backend", default=None)


def triton_available() -> bool:
    """True when triton imports (Linux x86-64 wheels only)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_active() -> bool:
    """True when the Triton kernels were created under TRITON_INTERPRET=1 (decided at import)."""
    if not triton_available():
        return False
    from arvid.kernels.flash import KERNELS_INTERPRETED

    return KERNELS_INTERPRETED


def requested_backend() -> str:
    """The backend asked for: the active `use_backend` context, else ARVID_ATTENTION_BACKEND, else auto."""
    choice = _override.get()
    if choice is None:
        choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if choice not in BACKENDS:
            raise ArvidError(f"{ENV_VAR}={choice!r} is not a backend; set it to one of {', '.join(BACKENDS)}.")
    return choice


@contextlib.contextmanager
def use_backend(name: str):
    """Run the attention inside this block on `name` ("auto", "triton" or "pytorch")."""
    if name not in BACKENDS:
        raise ArvidError(f"attention backend {name!r} is unknown; use one of {', '.join(BACKENDS)}.")
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def attention_backend(device: torch.device | str) -> str:
    """The path attention on `device` takes now: "triton", "triton-interpreter" or "pytorch"."""
    device = torch.device(device)
    choice = requested_backend()
    if choice == "pytorch":
        return "pytorch"
    if triton_available():
        if interpreter_active():
            return "triton-interpreter"
        if device.type == "cuda":
            return "triton"
    if choice == "triton":
        raise ArvidError(
            f"the Triton attention kernels cannot run on {device} here "
            f"({'triton is not installed' if not triton_available() else 'they need a CUDA device, or TRITON_INTERPRET=1 set before arvid.kernels is imported'}); "
            f"unset {ENV_VAR} or set it to auto or pytorch."
        )
    return "pytorch"


TABLE_FILE = Path(__file__).with_name("dispatch_table.json")


def case_class(op: str, *, hs: int, length: int = 0, queries: int = 1, batch: int = 1, masked: bool = False) -> dict:
    """The class of an attention call, as dispatch_table.json's rows name it. op "flash": its mask ("causal" when
    SDPA runs it without a dense mask, else "arvid"), head size and length ("short" up to 4k keys, "long" above);
    op "decode": its queries ("one", "few" up to 16, "frame" beyond), batch x kv heads ("small" under 64) and cache
    ("short" up to 4k slots)."""
    if op == "flash":
        return {"op": op, "mask": "arvid" if masked else "causal", "hs": hs, "length": "long" if length > 4096 else "short"}
    return {"op": op, "queries": "one" if queries == 1 else "few" if queries <= 16 else "frame",
            "batch": "small" if batch < 64 else "large", "cache": "long" if length > 4096 else "short"}


CASE_KEYS = ("op", "mask", "hs", "length", "queries", "batch", "cache")  # what case_class names; other fields
# of a row (its ratio, the shape it was measured at, a note) are the record, not the key


@functools.cache
def _table() -> tuple[tuple[frozenset, str], ...]:
    try:
        rows = json.loads(TABLE_FILE.read_text())["rows"]
        table = tuple((frozenset((k, r[k]) for k in CASE_KEYS if k in r), r["choice"]) for r in rows)
        if any(choice not in ("triton", "pytorch") for _, choice in table):
            raise ValueError("a choice other than triton or pytorch")
        return table
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"{TABLE_FILE} cannot be read ({type(e).__name__}: {e}); the automatic attention choice "
                      "falls back to its rule (python -m arvid.kernels.tune writes the table again)", stacklevel=2)
        return ()


def measured_choice(case: dict) -> str:
    """"triton" or "pytorch" for a case class on a GPU: its table row, else the rule of the module docstring."""
    items = frozenset(case.items())
    for key, choice in _table():
        if key <= items:
            return choice
    if case["op"] == "flash":
        return "pytorch" if case["mask"] == "causal" else "triton"
    return "pytorch" if case["queries"] == "one" else "triton"


@torch.compiler.assume_constant_result
def _uses_triton(device_type: str, case: tuple) -> bool:
    backend = attention_backend(torch.device(device_type))
    if backend == "triton" and requested_backend() == "auto" and case:
        return measured_choice(dict(case)) == "triton"
    return backend != "pytorch"


def uses_triton(t: torch.Tensor, case: dict | None = None) -> bool:
    """True when attention on t's device goes to the Triton kernels; on a GPU with the automatic choice, for the
    call's case class (`case_class`). Under torch.compile the choice is made once, when the function is traced."""
    return _uses_triton(t.device.type, tuple(sorted(case.items())) if case else ())
