"""Attention kernel benchmarks: arvid's kernels beside PyTorch's scaled_dot_product_attention, the
two measured in the same run and grouped side by side.

    pytest benchmarks/bench_kernels.py --benchmark-enable                         # time them
    pytest benchmarks/bench_kernels.py --benchmark-enable \
        --benchmark-json benchmarks/results/<gpu>.json                           # keep them (GPU)
    pytest benchmarks/bench_kernels.py --benchmark-disable                        # CI: each case once

Prefill reports TFLOP/s (forward FLOPs 4·B·nh·hs·(L·P + L²/2) for L new tokens after a cached
prefix P, 4·B·nh·Lq·Lk·hs without the causal mask); decode reports GB/s of K and V read and the
fraction of the GPU's peak bandwidth. Figures go into `benchmark.extra_info`, with the device name.
On a GPU the Triton kernels run compiled (shapes from ANCHORS.md); the CUDA cases skip on the CPU,
where the Triton interpreter's timings mean nothing, and the CPU cases time the PyTorch paths at
small shapes instead. Each timed call runs `iters` launches and one synchronisation.

Shape legend: B batch, nh query heads, nh_kv kv heads, L/Lq queries, P cached prefix, S cache
slots, hs head size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from arvid.kernels import decode_attention, flash_attention, use_backend
from arvid.kernels.reference import decode_mask

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: under the Triton interpreter timings mean nothing")
cpu_only = pytest.mark.skipif(CUDA, reason="CPU case: on a GPU the CUDA cases cover these paths")
PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}  # bytes/s, HBM


def device_name() -> str:
    return torch.cuda.get_device_name() if CUDA else "cpu"


def peak_bandwidth() -> float | None:
    name = device_name()
    return next((bw for key, bw in PEAK_BANDWIDTH.items() if key in name), None)


def prefill_flops(B: int, nh: int, L: int, P: int, hs: int, causal: bool = True) -> float:
    """Forward FLOPs of L queries after a cached prefix of P keys."""
    if not causal:
        return 4.0 * B * nh * L * (P + L) * hs
    return 4.0 * B * nh * hs * (L * P + L * L / 2)


def seconds_per_call(benchmark, fn, iters: int, rounds: int) -> float | None:
    """Time `iters` calls of fn per round (synchronising once); None when benchmarking is disabled."""

    def run():
        for _ in range(iters):
            fn()
        if CUDA:
            torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median / iters


def record(benchmark, impl: str, seconds: float | None, *, flops: float | None = None, bytes_read: float | None = None):
    info = benchmark.extra_info
    info.update(device=device_name(), impl=impl)
    if seconds is None:
        return
    info["ms"] = round(seconds * 1e3, 4)
    if flops is not None:
        info["tflops"] = round(flops / seconds / 1e12, 3)
    if bytes_read is not None:
        info["gb_per_s"] = round(bytes_read / seconds / 1e9, 2)
        if peak_bandwidth():
            info["fraction_of_peak_bandwidth"] = round(bytes_read / seconds / peak_bandwidth(), 3)


# ----------------------------------------------------------------------------------------------
# Prefill: B·S = 16k tokens, (nh, hs) = (32, 64) and (16, 128), causal; a prefix plus a chunk.

PREFILL = [
    # (B, nh, L, P, hs)
    (16, 32, 1024, 0, 64),
    (4, 32, 4096, 0, 64),
    (1, 32, 16384, 0, 64),
    (16, 16, 1024, 0, 128),
    (4, 16, 4096, 0, 128),
    (1, 16, 16384, 0, 128),
    (4, 16, 1024, 4096, 128),
    (1, 16, 1024, 16384, 128),
]


def _sdpa_prefill(q, k, v, P):
    if P == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    from torch.nn.attention.bias import causal_lower_right  # bottom-right aligned causal mask

    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]))


@needs_cuda
@pytest.mark.parametrize("impl", ["arvid", "sdpa"])
@pytest.mark.parametrize("B,nh,L,P,hs", PREFILL, ids=lambda x: str(x))
def bench_prefill_cuda(benchmark, impl, B, nh, L, P, hs):
    dtype = torch.bfloat16
    q = torch.randn(B, nh, L, hs, device="cuda", dtype=dtype)  # (B, nh, L, hs)
    k = torch.randn(B, nh, P + L, hs, device="cuda", dtype=dtype)  # (B, nh, P + L, hs)
    v = torch.randn_like(k)
    benchmark.group = f"prefill B={B} nh={nh} L={L} P={P} hs={hs} bf16"
    with use_backend("triton" if impl == "arvid" else "pytorch"):
        fn = (lambda: flash_attention(q, k, v)) if impl == "arvid" else (lambda: _sdpa_prefill(q, k, v, P))
        fn()
        seconds = seconds_per_call(benchmark, fn, iters=10, rounds=5)
    record(benchmark, impl, seconds, flops=prefill_flops(B, nh, L, P, hs))


@needs_cuda
@pytest.mark.parametrize("impl", ["arvid", "sdpa"])
@pytest.mark.parametrize("B,nh,L,hs", [(4, 16, 4096, 128), (16, 32, 1024, 64)], ids=lambda x: str(x))
def bench_prefill_backward_cuda(benchmark, impl, B, nh, L, hs):
    q, k, v = (torch.randn(B, nh, L, hs, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    do = torch.randn(B, nh, L, hs, device="cuda", dtype=torch.bfloat16)
    benchmark.group = f"prefill fwd+bwd B={B} nh={nh} L={L} hs={hs} bf16"
    with use_backend("triton" if impl == "arvid" else "pytorch"):
        attn = (lambda: flash_attention(q, k, v)) if impl == "arvid" else (lambda: _sdpa_prefill(q, k, v, 0))
        fn = lambda: torch.autograd.grad(attn(), (q, k, v), do)  # noqa: E731
        fn()
        seconds = seconds_per_call(benchmark, fn, iters=5, rounds=5)
    record(benchmark, impl, seconds, flops=3.5 * prefill_flops(B, nh, L, 0, hs))  # backward = 2.5x forward


# ----------------------------------------------------------------------------------------------
# Decode: B in {1, 4, 16}, Lq in {1, 4}, caches from 1k to 64k slots, a ring buffer written
# past its end (the write position mid-buffer, so positions wrap). nh = 32, nh_kv = 8, hs = 128.

DECODE = [(B, Lq, S) for B in (1, 4, 16) for Lq in (1, 4) for S in (1024, 8192, 65536)]


def wrapped_cache(B: int, S: int, Lq: int, device: str):
    """cache_pos (B, S): a buffer that has seen 1.5·S tokens; q_pos (B, Lq): the newest ones."""
    written = S + S // 2
    slots = torch.arange(S, device=device)
    cache_pos = torch.where(slots < S // 2, slots + S, slots).expand(B, S).contiguous()  # (B, S)
    q_pos = torch.arange(written - Lq, written, device=device).expand(B, Lq).contiguous()  # (B, Lq)
    return cache_pos, q_pos


def decode_inputs(B, Lq, S, nh, nh_kv, hs, dtype, device):
    q = torch.randn(B, nh, Lq, hs, device=device, dtype=dtype)  # (B, nh, Lq, hs)
    k_cache = torch.randn(B, nh_kv, S, hs, device=device, dtype=dtype)  # (B, nh_kv, S, hs)
    v_cache = torch.randn_like(k_cache)
    return (q, k_cache, v_cache, *wrapped_cache(B, S, Lq, device))


@needs_cuda
@pytest.mark.parametrize("impl", ["arvid", "sdpa"])
@pytest.mark.parametrize("B,Lq,S", DECODE, ids=lambda x: str(x))
def bench_decode_cuda(benchmark, impl, B, Lq, S):
    nh, nh_kv, hs, dtype = 32, 8, 128, torch.bfloat16
    q, k_cache, v_cache, cache_pos, q_pos = decode_inputs(B, Lq, S, nh, nh_kv, hs, dtype, "cuda")
    benchmark.group = f"decode B={B} Lq={Lq} S={S} nh={nh}/{nh_kv} hs={hs} bf16"
    mask = decode_mask(cache_pos, q_pos)  # (B, 1, Lq, S), built once: SDPA is timed alone
    with torch.no_grad(), use_backend("triton"):
        if impl == "arvid":
            fn = lambda: decode_attention(q, k_cache, v_cache, cache_pos, q_pos)  # noqa: E731
        else:
            fn = lambda: F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask, enable_gqa=True)  # noqa: E731
        fn()
        seconds = seconds_per_call(benchmark, fn, iters=50, rounds=5)
    record(benchmark, impl, seconds, bytes_read=2 * k_cache.numel() * k_cache.element_size())


# ----------------------------------------------------------------------------------------------
# CPU: the PyTorch paths at small shapes, beside bare SDPA (what arvid's mask handling costs).


@cpu_only
@pytest.mark.parametrize("impl", ["arvid-pytorch", "sdpa"])
def bench_prefill_cpu(benchmark, impl):
    B, nh, L, hs = 1, 4, 256, 64
    q, k, v = (torch.randn(B, nh, L, hs) for _ in range(3))
    benchmark.group = f"cpu prefill B={B} nh={nh} L={L} hs={hs} fp32"
    with use_backend("pytorch"):
        fn = (lambda: flash_attention(q, k, v)) if impl == "arvid-pytorch" else (
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        out = fn()
        seconds = seconds_per_call(benchmark, fn, iters=5, rounds=5)
    assert out.shape == q.shape
    record(benchmark, impl, seconds, flops=prefill_flops(B, nh, L, 0, hs))


@cpu_only
@pytest.mark.parametrize("impl", ["arvid-pytorch", "sdpa"])
def bench_decode_cpu(benchmark, impl):
    B, Lq, S, nh, nh_kv, hs = 1, 1, 2048, 8, 2, 64
    q, k_cache, v_cache, cache_pos, q_pos = decode_inputs(B, Lq, S, nh, nh_kv, hs, torch.float32, "cpu")
    benchmark.group = f"cpu decode B={B} Lq={Lq} S={S} nh={nh}/{nh_kv} hs={hs} fp32"
    with torch.no_grad(), use_backend("pytorch"):
        if impl == "arvid-pytorch":
            fn = lambda: decode_attention(q, k_cache, v_cache, cache_pos, q_pos)  # noqa: E731
        else:  # bare SDPA over the whole cache, no mask (every slot is filled and older than the query)
            k_rep, v_rep = (t.repeat_interleave(nh // nh_kv, dim=1) for t in (k_cache, v_cache))
            fn = lambda: F.scaled_dot_product_attention(q, k_rep, v_rep)  # noqa: E731
        out = fn()
        seconds = seconds_per_call(benchmark, fn, iters=20, rounds=5)
    assert out.shape == q.shape and torch.isfinite(out).all()
    record(benchmark, impl, seconds, bytes_read=2 * k_cache.numel() * k_cache.element_size())


# ----------------------------------------------------------------------------------------------
# arvid's own masks (window + sinks, frame-causal) against FlexAttention, what a PyTorch user would pick for a
# custom mask (compiled, the same mask as a block mask), and SDPA given the dense mask. bf16, hs 128.

ARVID_MASKS = [  # (name, B, nh, L, frame, window, sinks)
    ("window+sinks", 4, 16, 4096, 1, 1024, 64),
    ("frame-causal", 4, 16, 4096, 64, 8 * 64, 64),  # 8x8-token frames, a window of 8 frames, one sink frame
]


def flex_mask_mod(L: int, frame: int, window: int, sinks: int):
    """The mask rule of arvid.kernels.reference.visible as a FlexAttention mask_mod (queries and keys at 0..L-1)."""
    def mask_mod(b, h, q_idx, kv_idx):
        qf, kf = (q_idx // frame) * frame, (kv_idx // frame) * frame
        return (kf <= qf) & ((qf - kf < window) | (kv_idx < sinks))
    return mask_mod


def flex_call(q, k, v, L, frame, window, sinks, compiled: bool):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    block = create_block_mask(flex_mask_mod(L, frame, window, sinks), None, None, L, L, device=q.device)
    fn = torch.compile(flex_attention) if compiled else flex_attention
    return lambda: fn(q, k, v, block_mask=block)


@needs_cuda
@pytest.mark.parametrize("impl", ["arvid", "flex", "sdpa"])
@pytest.mark.parametrize("name,B,nh,L,frame,window,sinks", ARVID_MASKS, ids=lambda x: str(x))
def bench_arvid_masks_cuda(benchmark, impl, name, B, nh, L, frame, window, sinks):
    q, k, v = (torch.randn(B, nh, L, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    benchmark.group = f"arvid mask {name} B={B} nh={nh} L={L} hs=128 bf16"
    if impl == "arvid":
        fn = lambda: flash_attention(q, k, v, window=window, sinks=sinks, frame=frame)  # noqa: E731
    elif impl == "flex":
        fn = flex_call(q, k, v, L, frame, window, sinks, compiled=True)
    else:
        from arvid.kernels.reference import flash_mask

        mask = flash_mask(L, L, window=window, sinks=sinks, frame=frame, device="cuda")
        fn = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # noqa: E731
    with use_backend("triton" if impl == "arvid" else "pytorch"):
        fn()
        seconds = seconds_per_call(benchmark, fn, iters=10, rounds=5)
    benchmark.extra_info["baseline"] = impl == "flex"
    record(benchmark, impl, seconds)


@cpu_only
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # eager on purpose: a mask check
@pytest.mark.parametrize("name,frame,window,sinks", [("window+sinks", 1, 20, 5), ("frame-causal", 6, 18, 6)])
def bench_arvid_masks_match_flex_cpu(benchmark, name, frame, window, sinks):
    """On the CPU (eager FlexAttention, small shapes): the flex mask above is arvid's rule, so the GPU rows
    compare the same attention."""
    L = 60
    q, k, v = (torch.randn(1, 2, L, 32) for _ in range(3))
    benchmark.group = f"cpu arvid mask {name} vs flex (eager) L={L}"
    flex = flex_call(q, k, v, L, frame, window, sinks, compiled=False)
    with use_backend("pytorch"):
        ours = flash_attention(q, k, v, window=window, sinks=sinks, frame=frame)
        seconds = seconds_per_call(benchmark, flex, iters=2, rounds=3)
    assert (flex() - ours).abs().max().item() < 1e-4
    record(benchmark, "flex-eager", seconds)
