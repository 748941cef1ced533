"""The public attention functions: argument checks, then the Triton kernels or the PyTorch path.

Shape legend: B batch, nh query heads, nh_kv key/value heads, Lq queries, Lk keys, S cache slots,
hs head size.
"""

from __future__ import annotations

import math

import torch

from arvid.kernels.checks import AttentionArgumentError, check_attention_args
from arvid.kernels.dispatch import case_class, uses_triton
from arvid.kernels.reference import decode_mask, flash_mask, sdpa_attention, sdpa_causal

MAX_DECODE_QUERIES = 512  # a whole latent frame or two (a 16x16-token frame is 256 queries)


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    sinks: int = 0,
    frame: int = 1,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention for prefill and training. q (B, nh, Lq, hs); k, v (B, nh_kv, Lk, hs) with Lq <= Lk
    -> (B, nh, Lq, hs). Query i sits at position Lk - Lq + i (bottom-right aligned: the keys before
    it are a cached prefix). With causal=True it sees key j when j <= its position and, given a
    window, when its position - j < window or j < sinks. With frame=F > 1 (frame-causal) positions
    are compared by the first position of their frame of F: a query sees all of its own frame.
    causal=False sees every key (no window). Differentiable on both paths. scale defaults to 1/sqrt(hs)."""
    check_attention_args("flash_attention", q, k, v, window, sinks, frame)
    Lq, Lk = q.shape[2], k.shape[2]
    if Lq > Lk:
        raise AttentionArgumentError(
            f"flash_attention: {Lq} queries but {Lk} keys; queries are the last Lq positions, so Lq <= Lk."
        )
    if not causal and (window is not None or sinks or frame != 1):
        raise AttentionArgumentError("flash_attention: window, sinks and frame need causal=True.")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    masked = window is not None or sinks > 0 or frame != 1
    if uses_triton(q, case_class("flash", hs=q.shape[-1], length=Lk, masked=masked)):
        return torch.ops.arvid.flash_attention(q, k, v, causal, window, sinks, scale, frame)[0]
    if window is None and not sinks and frame == 1:  # a plain (or no) causal mask: SDPA's own, no dense mask
        return sdpa_causal(q, k, v, causal, scale)
    mask = flash_mask(Lq, Lk, causal=causal, window=window, sinks=sinks, frame=frame, device=q.device)
    return sdpa_attention(q, k, v, mask, scale)


def _check_positions(q: torch.Tensor, k_cache: torch.Tensor, cache_pos: torch.Tensor, q_pos: torch.Tensor) -> None:
    B, _, Lq, _ = q.shape
    S = k_cache.shape[2]
    if not 1 <= Lq <= MAX_DECODE_QUERIES:
        raise AttentionArgumentError(
            f"decode_attention: {Lq} queries; it takes 1 to {MAX_DECODE_QUERIES} (use flash_attention for more)."
        )
    for label, t, want in (("cache_pos", cache_pos, (B, S)), ("q_pos", q_pos, (B, Lq))):
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64):
            raise AttentionArgumentError(f"decode_attention: {label} must be an int32 or int64 tensor.")
        if tuple(t.shape) != want:
            raise AttentionArgumentError(f"decode_attention: {label} has shape {tuple(t.shape)}, expected {want}.")
        if t.device != q.device:
            raise AttentionArgumentError(f"decode_attention: {label} is on {t.device}, q on {q.device}.")


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_pos: torch.Tensor,
    q_pos: torch.Tensor,
    *,
    window: int | None = None,
    sinks: int = 0,
    frame: int = 1,
    scale: float | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Attention of new queries (one token, or a whole latent frame) against a ring-buffer KV cache -> (B, nh, Lq, hs).

    q (B, nh, Lq, hs), 1 <= Lq <= 512; k_cache, v_cache (B, nh_kv, S, hs); cache_pos (B, S) int: the
    absolute position each slot holds, -1 for an empty slot; q_pos (B, Lq) int: the queries'
    absolute positions. Query (b, i) sees slot s iff 0 <= cache_pos[b, s] <= q_pos[b, i] and
    (window is None or q_pos[b, i] - cache_pos[b, s] < window or cache_pos[b, s] < sinks), positions
    compared by the first position of their frame of `frame` (reference.py); a query that sees nothing
    returns zeros. Slot order does not matter, so wrapped buffers, sinks and
    samples of different lengths share one rule. num_splits forces the split-KV count of the Triton
    kernel (None: chosen from the shape). Differentiable on the PyTorch path; with gradients
    required it always takes the PyTorch path (the Triton decode kernel is inference-only)."""
    check_attention_args("decode_attention", q, k_cache, v_cache, window, sinks, frame)
    _check_positions(q, k_cache, cache_pos, q_pos)
    if num_splits is not None and (not isinstance(num_splits, int) or num_splits < 1):
        raise AttentionArgumentError(f"decode_attention: num_splits={num_splits!r}; use None or a positive int.")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k_cache, v_cache))
    case = case_class("decode", hs=q.shape[-1], length=k_cache.shape[2], queries=q.shape[2],
                      batch=q.shape[0] * k_cache.shape[1])
    if uses_triton(q, case) and not needs_grad:
        from arvid.kernels.decode import choose_num_splits

        splits = choose_num_splits(q, k_cache) if num_splits is None else num_splits
        return torch.ops.arvid.decode_attention(q, k_cache, v_cache, cache_pos, q_pos, window, sinks, scale, splits,
                                                frame)
    return sdpa_attention(q, k_cache, v_cache, decode_mask(cache_pos, q_pos, window, sinks, frame), scale)
