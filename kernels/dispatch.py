"""Which attention path runs: the Triton kernels (compiled on CUDA, or interpreted on any device
under TRITON_INTERPRET=1) or PyTorch's scaled_dot_product_attention with arvid's mask.

The choice, made at every call:
1. `use_backend(...)` context manager, when one is active;
2. else the environment variable ARVID_ATTENTION_BACKEND = auto | triton | pytorch;
3. "auto": Triton for CUDA tensors, and for any tensors when the kernels were built under the
   Triton interpreter; PyTorch otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

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


@torch.compiler.assume_constant_result
def _uses_triton(device_type: str) -> bool:
    return attention_backend(torch.device(device_type)) != "pytorch"


def uses_triton(t: torch.Tensor) -> bool:
    """True when attention on t's device goes to the Triton kernels. Under torch.compile the choice
    is made once, when the function is traced."""
    return _uses_triton(t.device.type)
