"""Fused flash attention for prefill and training: Triton forward and backward kernels, their
launchers, and the `arvid::flash_attention` custom op (with fake implementations and autograd).

Shape legend: B batch, nh query heads, nh_kv key/value heads (grouped-query: query head h reads
kv head h // (nh // nh_kv)), Lq queries, Lk keys, hs head size, D = hs padded to a power of two.

Query i sits at absolute position Lk - Lq + i; the mask rule is that of reference.py (token-causal, or
frame-causal with `frame` > 1: a query sees its whole latent frame and the earlier ones). Scores are
kept in base 2 (scale * log2(e) folded into one multiplier) and the online softmax runs in
float32. `lse` is the per-row log-sum-exp of the scaled scores in base 2, (B, nh, Lq) float32,
-inf for a row that sees no key. The forward visits only the key blocks a query block can see:
the sink blocks, then the blocks from the window's start to the diagonal.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from arvid.kernels.checks import AttentionArgumentError

# The Triton interpreter is chosen when a @triton.jit function is created, i.e. at import.
KERNELS_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
LOG2E = 1.4426950408889634
MAX_HEAD_SIZE = 256


@triton.jit
def _visible(q_pos, k_pos, Lk, window, sinks, frame, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
             HAS_FRAME: tl.constexpr):
    """Mask of the flash rule; q_pos and k_pos come pre-broadcast ((M, 1) and (1, N), or transposed). With
    HAS_FRAME, causality and the window compare the first positions of the query's and the key's frames."""
    vis = k_pos < Lk
    q_f = q_pos
    k_f = k_pos
    if HAS_FRAME:
        q_f = (q_pos // frame) * frame
        k_f = (k_pos // frame) * frame
    if CAUSAL:
        vis = vis & (k_f <= q_f)
    if HAS_WINDOW:
        vis = vis & ((q_f - k_f < window) | (k_pos < sinks))
    return vis


@triton.jit
def _key_blocks(m0, Lq, Lk, window, sinks, frame, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                HAS_FRAME: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key blocks seen by query rows [m0, m0 + BLOCK_M): sink blocks [0, sink_end), then [lo, hi)."""
    first_pos = Lk - Lq + m0
    first_f = first_pos  # the first position of the first query's frame
    last_end = first_pos + BLOCK_M  # one past the last position the block's last query's frame holds
    if HAS_FRAME:
        first_f = (first_pos // frame) * frame
        last_end = ((first_pos + BLOCK_M - 1) // frame + 1) * frame
    hi = Lk
    if CAUSAL:
        hi = tl.minimum(Lk, last_end)
    lo = 0
    sink_end = 0
    if HAS_WINDOW:
        lo = (tl.maximum(first_f - window + 1, 0) // BLOCK_N) * BLOCK_N
        sink_end = tl.minimum(tl.cdiv(sinks, BLOCK_N) * BLOCK_N, lo)
    return sink_end, lo, hi


@triton.jit
def _fwd_block(
    acc, m_i, l_i, q, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs, window, sinks, frame, scale_log2,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """One online-softmax step of a query block (M rows) over the keys [start_n, start_n + BLOCK_N)."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < Lk) & (offs_d[None, :] < hs)
    k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale_log2  # (M, N)
    vis = _visible(q_pos[:, None], offs_n[None, :], Lk, window, sinks, frame, CAUSAL, HAS_WINDOW, HAS_FRAME)
    qk = tl.where(vis, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing seen yet: no -inf - -inf
    p = tl.math.exp2(qk - m_safe[:, None])  # (M, N)
    alpha = tl.math.exp2(m_i - m_safe)
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, m_new, l_i * alpha + tl.sum(p, 1)


@triton.jit
def _flash_fwd_kernel(
    Q, K, V, Out, Lse,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    nh, Lq, Lk, hs, GROUP, window, sinks, frame, scale_log2,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (cdiv(Lq, BLOCK_M), B * nh): one query block of one head."""
    m0 = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // nh).to(tl.int64)
    h = bh % nh
    kvh = h // GROUP
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_pos = Lk - Lq + offs_m
    row_mask = (offs_m[:, None] < Lq) & (offs_d[None, :] < hs)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :], mask=row_mask, other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    sink_end, lo, hi = _key_blocks(m0, Lq, Lk, window, sinks, frame, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_M, BLOCK_N)
    for start_n in range(0, sink_end, BLOCK_N):
        acc, m_i, l_i = _fwd_block(acc, m_i, l_i, q, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs,
                                   window, sinks, frame, scale_log2, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_N, BLOCK_D,
                                   DOT_PRECISION)
    for start_n in range(lo, hi, BLOCK_N):
        acc, m_i, l_i = _fwd_block(acc, m_i, l_i, q, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs,
                                   window, sinks, frame, scale_log2, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_N, BLOCK_D,
                                   DOT_PRECISION)

    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]  # a row that sees nothing stays 0
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
    tl.store(Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=row_mask)
    tl.store(Lse + bh.to(tl.int64) * Lq + offs_m, lse, mask=offs_m < Lq)


@triton.jit
def _dq_block(
    dq, q, do, lse, delta, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs, window, sinks, frame,
    scale_log2, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dq (M, D) += dS @ K over the keys [start_n, start_n + BLOCK_N) (unscaled)."""
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < Lk) & (offs_d[None, :] < hs)
    k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
    v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale_log2  # (M, N)
    vis = _visible(q_pos[:, None], offs_n[None, :], Lk, window, sinks, frame, CAUSAL, HAS_WINDOW, HAS_FRAME)
    p = tl.where(vis, tl.math.exp2(qk - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (M, N)
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)


@triton.jit
def _flash_bwd_dq_kernel(
    Q, K, V, DO, Lse, Delta, DQ,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    nh, Lq, Lk, hs, GROUP, window, sinks, frame, scale, scale_log2,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (cdiv(Lq, BLOCK_M), B * nh). DO and DQ share q's strides; Lse, Delta are (B, nh, Lq)."""
    m0 = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = (bh // nh).to(tl.int64)
    h = bh % nh
    kvh = h // GROUP
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_pos = Lk - Lq + offs_m
    row_mask = (offs_m[:, None] < Lq) & (offs_d[None, :] < hs)
    q_off = b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :]
    q = tl.load(Q + q_off, mask=row_mask, other=0.0)
    do = tl.load(DO + q_off, mask=row_mask, other=0.0)
    lse = tl.load(Lse + bh.to(tl.int64) * Lq + offs_m, mask=offs_m < Lq, other=0.0)
    lse = tl.where(lse == float("-inf"), 0.0, lse)  # a row that sees nothing: p = 0 anyway
    delta = tl.load(Delta + bh.to(tl.int64) * Lq + offs_m, mask=offs_m < Lq, other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    sink_end, lo, hi = _key_blocks(m0, Lq, Lk, window, sinks, frame, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_M, BLOCK_N)
    for start_n in range(0, sink_end, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, delta, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs,
                       window, sinks, frame, scale_log2, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_N, BLOCK_D, DOT_PRECISION)
    for start_n in range(lo, hi, BLOCK_N):
        dq = _dq_block(dq, q, do, lse, delta, q_pos, k_base, v_base, stride_kn, stride_vn, start_n, Lk, hs,
                       window, sinks, frame, scale_log2, CAUSAL, HAS_WINDOW, HAS_FRAME, BLOCK_N, BLOCK_D, DOT_PRECISION)
    tl.store(DQ + q_off, (dq * scale).to(DQ.dtype.element_ty), mask=row_mask)


@triton.jit
def _flash_bwd_dkdv_kernel(
    Q, K, V, DO, Lse, Delta, DK, DV,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    nh_kv, Lq, Lk, hs, GROUP, window, sinks, frame, scale, scale_log2,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Grid (cdiv(Lk, BLOCK_N), B * nh_kv): one key block of one kv head, summed over its GROUP query
    heads (no atomics). DO shares q's strides, DK k's, DV v's. Works in transposed tiles (N, M)."""
    n0 = tl.program_id(0) * BLOCK_N
    bkv = tl.program_id(1)
    b = (bkv // nh_kv).to(tl.int64)
    kvh = bkv % nh_kv
    nh = nh_kv * GROUP
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < Lk) & (offs_d[None, :] < hs)
    k_off = b * stride_kb + kvh * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :]
    v_off = b * stride_vb + kvh * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :]
    k = tl.load(K + k_off, mask=kv_mask, other=0.0)  # (N, D)
    v = tl.load(V + v_off, mask=kv_mask, other=0.0)  # (N, D)

    # Query rows that can see this key block: from the diagonal (its first key's frame) to the window's end
    # (all if sinks).
    offset = Lk - Lq
    first_f = n0  # the first position of the block's first key's frame
    last_f = n0 + BLOCK_N - 1  # ... and of its last key's frame
    extra = 0  # positions of a query's frame after its first
    if HAS_FRAME:
        first_f = (n0 // frame) * frame
        last_f = ((n0 + BLOCK_N - 1) // frame) * frame
        extra = frame - 1
    m_lo = 0
    if CAUSAL:
        m_lo = (tl.maximum(first_f - offset, 0) // BLOCK_M) * BLOCK_M
    m_hi = Lq
    if HAS_WINDOW:  # a block holding no sink is seen by queries whose frame starts less than `window` past its last
        m_hi = tl.where(n0 >= sinks, tl.minimum(Lq, last_f + window + extra - offset), Lq)

    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for g in range(0, GROUP):
        h = kvh * GROUP + g
        bh = b * nh + h
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_qb + h * stride_qh
        for m0 in range(m_lo, m_hi, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            row_mask = (offs_m[:, None] < Lq) & (offs_d[None, :] < hs)
            q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=row_mask, other=0.0)  # (M, D)
            do = tl.load(do_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=row_mask, other=0.0)  # (M, D)
            lse = tl.load(Lse + bh * Lq + offs_m, mask=offs_m < Lq, other=0.0)
            lse = tl.where(lse == float("-inf"), 0.0, lse)
            delta = tl.load(Delta + bh * Lq + offs_m, mask=offs_m < Lq, other=0.0)
            qk_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * scale_log2  # (N, M)
            vis_t = _visible(offset + offs_m[None, :], offs_n[:, None], Lk, window, sinks, frame, CAUSAL, HAS_WINDOW,
                             HAS_FRAME)
            vis_t = vis_t & (offs_m[None, :] < Lq)
            p_t = tl.where(vis_t, tl.math.exp2(qk_t - lse[None, :]), 0.0)  # (N, M)
            dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (N, M)
            ds_t = p_t * (dp_t - delta[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)
    tl.store(DK + k_off, (dk * scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + v_off, dv.to(DV.dtype.element_ty), mask=kv_mask)


# ----------------------------------------------------------------------------------------------
# Launchers


def _block_d(hs: int) -> int:
    return max(16, triton.next_power_of_2(hs))


def _dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # fp32 must not silently become TF32


def _fwd_config(hs: int, dtype: torch.dtype, device: torch.device) -> dict:
    """Block sizes of the forward and dq kernels (query block M, key block N)."""
    if device.type != "cuda":  # interpreter: larger tiles mean fewer interpreted steps
        return dict(BLOCK_M=64, BLOCK_N=64)
    big = hs > 64 or dtype == torch.float32
    return dict(BLOCK_M=128 if not (hs > 64 and dtype == torch.float32) else 64, BLOCK_N=64 if not big else 32,
                num_warps=8 if hs > 64 else 4, num_stages=2 if dtype == torch.float32 else 3)


def _bwd_config(hs: int, dtype: torch.dtype, device: torch.device) -> dict:
    if device.type != "cuda":
        return dict(BLOCK_M=64, BLOCK_N=64)
    return dict(BLOCK_M=64 if hs <= 64 else 32, BLOCK_N=64, num_warps=4 if hs <= 64 else 8,
                num_stages=2 if dtype == torch.float32 or hs > 64 else 3)


def _check_launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """What the kernels need beyond check_attention_args: a head size they tile, unit stride along
    hs, and a device they run on."""
    hs = q.shape[-1]
    if hs > MAX_HEAD_SIZE:
        raise AttentionArgumentError(f"flash_attention: head size {hs} > {MAX_HEAD_SIZE}; the Triton kernel does not tile it.")
    for label, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise AttentionArgumentError(f"flash_attention: {label} has stride {t.stride(-1)} along hs; it must be 1 (call .contiguous()).")
    if q.device.type != "cuda" and not KERNELS_INTERPRETED:
        raise AttentionArgumentError(f"flash_attention: the Triton kernel needs CUDA tensors (got {q.device}) or TRITON_INTERPRET=1.")
    if q.dtype == torch.bfloat16 and KERNELS_INTERPRETED:
        raise AttentionArgumentError("flash_attention: the Triton interpreter does not support bfloat16; use float16 or float32.")


def flash_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, window: int | None, sinks: int, scale: float,
    block_m: int | None = None, block_n: int | None = None, frame: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. q (B, nh, Lq, hs), k, v (B, nh_kv, Lk, hs) ->
    out (B, nh, Lq, hs) in q's dtype, lse (B, nh, Lq) float32 (base 2). block_m/block_n override the tiles."""
    _check_launch(q, k, v)
    B, nh, Lq, hs = q.shape
    nh_kv, Lk = k.shape[1], k.shape[2]
    out = torch.empty((B, nh, Lq, hs), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, nh, Lq), dtype=torch.float32, device=q.device)
    if B * nh * Lq == 0:
        return out, lse
    cfg = _fwd_config(hs, q.dtype, q.device)
    cfg["BLOCK_M"] = block_m or cfg["BLOCK_M"]
    cfg["BLOCK_N"] = block_n or cfg["BLOCK_N"]
    grid = (triton.cdiv(Lq, cfg["BLOCK_M"]), B * nh)
    _flash_fwd_kernel[grid](
        q, k, v, out, lse,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        nh, Lq, Lk, hs, nh // nh_kv, window or 0, sinks, frame, scale * LOG2E,
        CAUSAL=causal, HAS_WINDOW=window is not None, HAS_FRAME=frame > 1, BLOCK_D=_block_d(hs),
        DOT_PRECISION=_dot_precision(q.dtype), **cfg,
    )
    return out, lse


def flash_backward(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    causal: bool, window: int | None, sinks: int, scale: float, block_m: int | None = None, block_n: int | None = None,
    frame: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernels -> dq (like q), dk (like k), dv (like v)."""
    _check_launch(q, k, v)
    B, nh, Lq, hs = q.shape
    nh_kv, Lk = k.shape[1], k.shape[2]
    q, k, v, do = (t.contiguous() for t in (q, k, v, do))  # dq, dk, dv and do share their strides
    delta = (out.float() * do.float()).sum(-1).contiguous()  # (B, nh, Lq): rowsum(dO * O)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if B * nh * Lq == 0 or Lk == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    cfg = _bwd_config(hs, q.dtype, q.device)
    cfg["BLOCK_M"] = block_m or cfg["BLOCK_M"]
    cfg["BLOCK_N"] = block_n or cfg["BLOCK_N"]
    common = (
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
    )
    meta = dict(CAUSAL=causal, HAS_WINDOW=window is not None, HAS_FRAME=frame > 1, BLOCK_D=_block_d(hs),
                DOT_PRECISION=_dot_precision(q.dtype), **cfg)
    args = (Lq, Lk, hs, nh // nh_kv, window or 0, sinks, frame, scale, scale * LOG2E)
    _flash_bwd_dq_kernel[(triton.cdiv(Lq, cfg["BLOCK_M"]), B * nh)](q, k, v, do, lse, delta, dq, *common, nh, *args, **meta)
    _flash_bwd_dkdv_kernel[(triton.cdiv(Lk, cfg["BLOCK_N"]), B * nh_kv)](q, k, v, do, lse, delta, dk, dv, *common, nh_kv, *args, **meta)
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------
# Custom ops: torch.compile traces through them with the fake implementations.


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op("arvid::flash_attention", mutates_args=())
def flash_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, window: int | None, sinks: int, scale: float,
    frame: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, nh, Lq, hs), lse (B, nh, Lq) float32, base 2)."""
    return flash_forward(_unit_stride(q), _unit_stride(k), _unit_stride(v), causal, window, sinks, scale, frame=frame)


@flash_attention_op.register_fake
def _flash_attention_fake(q, k, v, causal, window, sinks, scale, frame):
    B, nh, Lq, hs = q.shape
    return q.new_empty((B, nh, Lq, hs)), q.new_empty((B, nh, Lq), dtype=torch.float32)


@torch.library.custom_op("arvid::flash_attention_backward", mutates_args=())
def flash_attention_backward_op(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    causal: bool, window: int | None, sinks: int, scale: float, frame: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), each contiguous, in the dtype of q, k, v."""
    return flash_backward(do, q, k, v, out, lse, causal, window, sinks, scale, frame=frame)


@flash_attention_backward_op.register_fake
def _flash_attention_backward_fake(do, q, k, v, out, lse, causal, window, sinks, scale, frame):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, causal, window, sinks, scale, frame = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.args = (causal, window, sinks, scale, frame)
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = flash_attention_backward_op(dout, q, k, v, out, lse, *ctx.args)
    return dq, dk, dv, None, None, None, None, None


flash_attention_op.register_autograd(_backward, setup_context=_setup_context)
