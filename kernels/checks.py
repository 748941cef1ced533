"""Argument checks shared by the attention launchers: clear messages naming the bad value."""

from __future__ import annotations

import torch

from arvid.errors import ArvidError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class AttentionArgumentError(ArvidError, ValueError):
    """Bad arguments to an attention op (shape, dtype, device, window, positions)."""


def check_attention_args(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window, sinks,
                         frame: int = 1) -> None:
    """q (B, nh, Lq, hs); k, v (B, nh_kv, Lk, hs): same dtype and device, nh a multiple of nh_kv."""
    for label, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise AttentionArgumentError(f"{name}: {label} must be a 4-d tensor (B, heads, L, hs), got {got}.")
        if t.dtype not in FLOAT_DTYPES:
            raise AttentionArgumentError(f"{name}: {label} has dtype {t.dtype}; use float32, float16 or bfloat16.")
    if not (q.dtype == k.dtype == v.dtype):
        raise AttentionArgumentError(f"{name}: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); cast them to one dtype.")
    if not (q.device == k.device == v.device):
        raise AttentionArgumentError(f"{name}: q, k, v are on different devices ({q.device}, {k.device}, {v.device}).")
    B, nh, _, hs = q.shape
    if k.shape != v.shape:
        raise AttentionArgumentError(f"{name}: k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape.")
    if k.shape[0] != B or k.shape[3] != hs:
        raise AttentionArgumentError(
            f"{name}: k/v {tuple(k.shape)} do not match q {tuple(q.shape)} in batch or head size."
        )
    nh_kv = k.shape[1]
    if nh_kv == 0 or nh % nh_kv:
        raise AttentionArgumentError(f"{name}: q has {nh} heads, k/v {nh_kv}; the query heads must be a multiple of the kv heads.")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise AttentionArgumentError(f"{name}: window={window!r}; use None (no window) or a positive int.")
    if not isinstance(sinks, int) or sinks < 0:
        raise AttentionArgumentError(f"{name}: sinks={sinks!r}; use a non-negative int.")
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 1:
        raise AttentionArgumentError(f"{name}: frame={frame!r}; use a positive int (1: token-causal, F: frame-causal).")
