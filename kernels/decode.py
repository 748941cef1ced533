"""Split-KV decode attention (flash-decoding) over a ring-buffer KV cache: Triton kernels, launcher
and the `arvid::decode_attention` custom op (with a fake implementation).

Shape legend: B batch, nh query heads, nh_kv key/value heads, G = nh // nh_kv query heads per kv
head, Lq new queries (1 up to a whole latent frame or two), S cache slots, hs head size, D = hs padded to a power of two,
P = num_splits.

Each slot of the cache carries the absolute position it holds (cache_pos (B, S), -1 = empty), each
query its own position (q_pos (B, Lq)); the mask rule is that of reference.py, so slot order is
free: wrapped ring buffers, attention sinks and per-sample lengths need nothing special.

Pass 1 (grid (P, B * nh_kv, row blocks)): the G * Lq query rows of one kv head are packed into one
tile (so tl.dot has at least 16 rows and K/V are read once per kv head), and each program runs an
online softmax over its 1/P share of the slots, writing a normalised partial output and its
log-sum-exp. Pass 2 (grid (B * nh * Lq,)) merges the P partials by their log-sum-exp. A query that
sees nothing, and an empty split, have lse = -inf and weigh nothing; an all-empty row gives 0.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from arvid.kernels.checks import AttentionArgumentError
from arvid.kernels.flash import KERNELS_INTERPRETED, LOG2E, MAX_HEAD_SIZE

MAX_SPLITS = 64


@triton.jit
def _decode_split_kernel(
    Q, K, V, CachePos, QPos, PartOut, PartLse,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_cpb, stride_qpb,
    B, nh_kv, Lq, S, hs, GROUP, window, sinks, frame, scale_log2, slots_per_split,
    HAS_WINDOW: tl.constexpr, HAS_FRAME: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """PartOut (P, B, nh, Lq, hs) float32 and PartLse (P, B, nh, Lq) float32, contiguous."""
    split = tl.program_id(0)
    bkv = tl.program_id(1)
    b = (bkv // nh_kv).to(tl.int64)
    kvh = bkv % nh_kv
    rows = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)  # row = g * Lq + i
    g = rows // Lq
    i = rows % Lq
    row_ok = rows < GROUP * Lq
    h = kvh * GROUP + g  # (M,)
    offs_d = tl.arange(0, BLOCK_D)
    row_mask = row_ok[:, None] & (offs_d[None, :] < hs)
    q = tl.load(Q + b * stride_qb + h[:, None] * stride_qh + i[:, None] * stride_qm + offs_d[None, :],
                mask=row_mask, other=0.0)  # (M, D)
    q_pos = tl.load(QPos + b * stride_qpb + i, mask=row_ok, other=-1)  # -1: a padding row sees nothing
    q_f = q_pos  # the first position of the query's frame (with HAS_FRAME)
    if HAS_FRAME:
        q_f = (q_pos // frame) * frame
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    lo = split * slots_per_split
    hi = tl.minimum(lo + slots_per_split, S)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        slot_ok = offs_n < hi
        cache_pos = tl.load(CachePos + b * stride_cpb + offs_n, mask=slot_ok, other=-1)  # (N,)
        kv_mask = slot_ok[:, None] & (offs_d[None, :] < hs)
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale_log2  # (M, N)
        cp = cache_pos[None, :]
        cf = cp
        if HAS_FRAME:
            cf = (cp // frame) * frame
        qf = q_f[:, None]
        vis = (cp >= 0) & (q_pos[:, None] >= 0) & (cf <= qf)
        if HAS_WINDOW:
            vis = vis & ((qf - cf < window) | (cp < sinks))
        qk = tl.where(vis, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(qk - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)  # (N, D)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new

    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.math.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
    nh = nh_kv * GROUP
    part_row = ((split * B + b) * nh + h) * Lq + i  # (M,) row of (P, B, nh, Lq)
    tl.store(PartOut + part_row[:, None] * hs + offs_d[None, :], out, mask=row_mask)
    tl.store(PartLse + part_row, lse, mask=row_ok)


@triton.jit
def _decode_merge_kernel(
    PartOut, PartLse, Out, rows_total, num_splits, hs,
    BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid (B * nh * Lq,): out[row] = sum_p exp(lse_p) out_p / sum_p exp(lse_p); Out is (B, nh, Lq, hs)."""
    row = tl.program_id(0).to(tl.int64)
    offs_p = tl.arange(0, BLOCK_P)
    offs_d = tl.arange(0, BLOCK_D)
    lse = tl.load(PartLse + offs_p * rows_total + row, mask=offs_p < num_splits, other=float("-inf"))  # (P,)
    m = tl.max(lse, 0)
    w = tl.math.exp2(lse - tl.where(m == float("-inf"), 0.0, m))  # 0 for an empty split
    total = tl.sum(w, 0)
    part = tl.load(PartOut + (offs_p[:, None] * rows_total + row) * hs + offs_d[None, :],
                   mask=(offs_p[:, None] < num_splits) & (offs_d[None, :] < hs), other=0.0)  # (P, D)
    out = tl.sum(w[:, None] * part, 0) / tl.where(total > 0.0, total, 1.0)
    tl.store(Out + row * hs + offs_d, out.to(Out.dtype.element_ty), mask=offs_d < hs)


# ----------------------------------------------------------------------------------------------
# Launcher


@functools.cache
def _sm_count_cached(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@torch.compiler.assume_constant_result
def _sm_count(index: int) -> int:
    return _sm_count_cached(index)


def _block_m(rows: int) -> int:
    return min(64, max(16, triton.next_power_of_2(rows)))


def choose_num_splits(q: torch.Tensor, k_cache: torch.Tensor) -> int:
    """Split count from the shape: enough programs for about two waves over the GPU, each split
    keeping at least 256 slots; no split when batch x kv heads already fill the GPU."""
    B, nh, Lq, _ = q.shape
    nh_kv, S = k_cache.shape[1], k_cache.shape[2]
    if q.device.type != "cuda":  # interpreter: programs run one after another; splitting only costs
        return max(1, min(4, triton.cdiv(S, 512)))
    programs = B * nh_kv * triton.cdiv((nh // nh_kv) * Lq, _block_m((nh // nh_kv) * Lq))
    sms = _sm_count(q.device.index if q.device.index is not None else torch.cuda.current_device())
    if programs >= sms:
        return 1
    return max(1, min(MAX_SPLITS, triton.cdiv(2 * sms, programs), triton.cdiv(S, 256)))


def _check_launch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_pos, q_pos) -> None:
    hs = q.shape[-1]
    if hs > MAX_HEAD_SIZE:
        raise AttentionArgumentError(f"decode_attention: head size {hs} > {MAX_HEAD_SIZE}; the Triton kernel does not tile it.")
    for label, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("cache_pos", cache_pos), ("q_pos", q_pos)):
        if t.stride(-1) != 1:
            raise AttentionArgumentError(f"decode_attention: {label} has stride {t.stride(-1)} along its last dim; it must be 1.")
    if q.device.type != "cuda" and not KERNELS_INTERPRETED:
        raise AttentionArgumentError(f"decode_attention: the Triton kernel needs CUDA tensors (got {q.device}) or TRITON_INTERPRET=1.")
    if q.dtype == torch.bfloat16 and KERNELS_INTERPRETED:
        raise AttentionArgumentError("decode_attention: the Triton interpreter does not support bfloat16; use float16 or float32.")


def decode_forward(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_pos: torch.Tensor, q_pos: torch.Tensor,
    window: int | None, sinks: int, scale: float, num_splits: int, block_n: int | None = None, frame: int = 1,
) -> torch.Tensor:
    """Launch both passes. q (B, nh, Lq, hs); k_cache, v_cache (B, nh_kv, S, hs); cache_pos (B, S);
    q_pos (B, Lq) -> (B, nh, Lq, hs) in q's dtype."""
    _check_launch(q, k_cache, v_cache, cache_pos, q_pos)
    B, nh, Lq, hs = q.shape
    nh_kv, S = k_cache.shape[1], k_cache.shape[2]
    group = nh // nh_kv
    num_splits = max(1, min(num_splits, MAX_SPLITS, S)) if S else 1
    out = torch.empty((B, nh, Lq, hs), dtype=q.dtype, device=q.device)
    if B * nh * Lq == 0:
        return out
    on_gpu = q.device.type == "cuda"
    block_n = block_n or (64 if on_gpu else 32)
    slots_per_split = triton.cdiv(triton.cdiv(S, num_splits), block_n) * block_n
    part_out = torch.empty((num_splits, B, nh, Lq, hs), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((num_splits, B, nh, Lq), dtype=torch.float32, device=q.device)
    block_m = _block_m(group * Lq)
    gpu_cfg = dict(num_warps=4, num_stages=2 if q.dtype == torch.float32 else 3) if on_gpu else {}
    _decode_split_kernel[(num_splits, B * nh_kv, triton.cdiv(group * Lq, block_m))](
        q, k_cache, v_cache, cache_pos, q_pos, part_out, part_lse,
        q.stride(0), q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        cache_pos.stride(0), q_pos.stride(0),
        B, nh_kv, Lq, S, hs, group, window or 0, sinks, frame, scale * LOG2E, slots_per_split,
        HAS_WINDOW=window is not None, HAS_FRAME=frame > 1, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(hs)),
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", **gpu_cfg,
    )
    _decode_merge_kernel[(B * nh * Lq,)](
        part_out, part_lse, out, B * nh * Lq, num_splits, hs,
        BLOCK_P=max(2, triton.next_power_of_2(num_splits)), BLOCK_D=triton.next_power_of_2(hs),
    )
    return out


# ----------------------------------------------------------------------------------------------
# Custom op: torch.compile traces through it with the fake implementation.


@torch.library.custom_op("arvid::decode_attention", mutates_args=())
def decode_attention_op(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_pos: torch.Tensor, q_pos: torch.Tensor,
    window: int | None, sinks: int, scale: float, num_splits: int, frame: int,
) -> torch.Tensor:
    """(B, nh, Lq, hs) in q's dtype; inference only (no autograd formula)."""
    unit = [t if t.stride(-1) == 1 else t.contiguous() for t in (q, k_cache, v_cache, cache_pos, q_pos)]
    return decode_forward(*unit, window, sinks, scale, num_splits, frame=frame)


@decode_attention_op.register_fake
def _decode_attention_fake(q, k_cache, v_cache, cache_pos, q_pos, window, sinks, scale, num_splits, frame):
    return q.new_empty(q.shape)
