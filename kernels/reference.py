"""Pure-PyTorch references of arvid's attention: the mask rule, both ops, and the tolerance rule.

Shape legend: B batch, nh query heads, nh_kv key/value heads (nh is a multiple of nh_kv), Lq
queries, Lk keys, S cache slots, hs head size.

The mask rule, shared by every path: a query at absolute position p sees a key at position j when
    j >= 0 (an empty cache slot holds -1),  f(j) <= f(p) (causal),  and
    (window is None  or  f(p) - f(j) < window  or  j < sinks)   (sliding window with attention sinks),
where f(x) = x // frame * frame is the first position of x's frame. With frame = 1 (the default) f is the
position itself: token-causal with a sliding window of tokens. With frame = F (the F tokens of a latent frame
sit at positions tF .. tF + F - 1) it is frame-causal: a query sees every token of its own frame and of the
earlier frames whose start is less than `window` positions before its frame's start (window = W·F: the W
latent frames up to its own), plus the sinks.
A query that sees no key returns zeros, never NaN.

`masked_attention_reference` is the float32 reference the tests compare the kernels against;
`sdpa_attention` is the PyTorch path the dispatcher runs when the Triton kernels do not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def visible(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None, sinks: int = 0,
            frame: int = 1) -> torch.Tensor:
    """Boolean mask (..., Lq, Lk): which keys each query sees. q_pos (..., Lq), k_pos (..., Lk)."""
    qp = q_pos[..., :, None]  # (..., Lq, 1)
    kp = k_pos[..., None, :]  # (..., 1, Lk)
    qf, kf = qp, kp
    if frame != 1:  # the first position of each one's frame
        qf, kf = qp.div(frame, rounding_mode="floor") * frame, kp.div(frame, rounding_mode="floor") * frame
    mask = (kp >= 0) & (kf <= qf)
    if window is not None:
        mask = mask & ((qf - kf < window) | (kp < sinks))
    return mask


def flash_mask(
    Lq: int, Lk: int, *, causal: bool = True, window: int | None = None, sinks: int = 0, frame: int = 1, device=None
) -> torch.Tensor:
    """Boolean mask (Lq, Lk) of flash_attention: query i sits at position Lk - Lq + i."""
    if not causal:
        return torch.ones(Lq, Lk, dtype=torch.bool, device=device)
    q_pos = torch.arange(Lk - Lq, Lk, device=device)
    k_pos = torch.arange(Lk, device=device)
    return visible(q_pos, k_pos, window, sinks, frame)


def decode_mask(cache_pos: torch.Tensor, q_pos: torch.Tensor, window: int | None = None, sinks: int = 0,
                frame: int = 1) -> torch.Tensor:
    """Boolean mask (B, 1, Lq, S) of decode_attention. cache_pos (B, S), q_pos (B, Lq)."""
    return visible(q_pos.long(), cache_pos.long(), window, sinks, frame)[:, None]


def _repeat_kv(x: torch.Tensor, nh: int) -> torch.Tensor:
    """(B, nh_kv, L, hs) -> (B, nh, L, hs): each key/value head serves nh // nh_kv query heads."""
    group = nh // x.shape[1]
    return x if group == 1 else x.repeat_interleave(group, dim=1)


def masked_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float | None = None, upcast: bool = True
) -> torch.Tensor:
    """Explicit softmax attention. q (B, nh, Lq, hs), k/v (B, nh_kv, Lk, hs), mask broadcastable to
    (B, nh, Lq, Lk). upcast=True computes in float32 (the reference); upcast=False computes in the
    input dtype (PyTorch's own rounding error, which sets the tolerance). Returns q's dtype."""
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, nh, Lq, Lk)
    scores = scores.masked_fill(~mask, float("-inf"))
    any_visible = mask.any(dim=-1, keepdim=True)  # (B|1, nh|1, Lq, 1)
    probs = torch.softmax(scores.masked_fill(~any_visible, 0.0), dim=-1) * any_visible
    return (probs.to(v.dtype) @ v).to(dtype)  # (B, nh, Lq, hs)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    window: int | None = None,
    sinks: int = 0,
    frame: int = 1,
    scale: float | None = None,
    upcast: bool = True,
) -> torch.Tensor:
    """Reference of flash_attention (same arguments), float32 inside unless upcast=False."""
    mask = flash_mask(q.shape[2], k.shape[2], causal=causal, window=window, sinks=sinks, frame=frame, device=q.device)
    return masked_attention_reference(q, k, v, mask, scale, upcast)


def decode_attention_reference(
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
    upcast: bool = True,
) -> torch.Tensor:
    """Reference of decode_attention (same arguments), float32 inside unless upcast=False."""
    mask = decode_mask(cache_pos, q_pos, window, sinks, frame)
    return masked_attention_reference(q, k_cache, v_cache, mask, scale, upcast)


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """The PyTorch path: scaled_dot_product_attention with an explicit boolean mask (broadcastable to
    (B, nh, Lq, Lk)). Differentiable. Rows that see no key return zeros, and their gradient is zero."""
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    any_visible = mask.any(dim=-1, keepdim=True)  # (..., Lq, 1)
    safe = mask | ~any_visible  # a row that sees nothing attends to everything, then is zeroed
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, scale=scale)  # (B, nh, Lq, hs)
    return out * any_visible.to(out.dtype)


def sdpa_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None = None) -> torch.Tensor:
    """The PyTorch path without a dense mask: causal bottom-right aligned (queries are the last Lq positions) or
    none, so SDPA may take its fused kernels (FlashAttention on a GPU). Differentiable."""
    Lq, Lk = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if not causal:
        return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
    if Lq == Lk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    from torch.nn.attention.bias import causal_lower_right

    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(Lq, Lk), scale=scale, enable_gqa=gqa)


def error_bound(reference: torch.Tensor, pytorch_out: torch.Tensor, multiple: float = 2.0, floor: float = 1e-5) -> float:
    """The tolerance rule of ANCHORS.md: a kernel's max error against the float32 `reference` may be
    `multiple` times PyTorch's own max error (`pytorch_out`, the same math in the test dtype) plus an
    absolute `floor`. Use multiple=3 for KV-cache and split-KV paths, floor=1e-4 for float32 on CPU."""
    return multiple * (pytorch_out.float() - reference.float()).abs().max().item() + floor


def max_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest absolute difference, in float32 (NaN counts as infinitely wrong)."""
    diff = (out.float() - reference.float()).abs()
    return float("inf") if torch.isnan(diff).any() else diff.max().item()
