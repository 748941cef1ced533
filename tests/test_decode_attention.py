"""decode_attention: the split-KV Triton kernel over a ring-buffer cache against the float32
reference (tolerance rule of ANCHORS.md, 3x for split-KV), with wrapped buffers, empty slots,
per-sample lengths, windows and sinks; split counts agreeing; cached decoding equal to
flash_attention over the whole sequence; argument checks; the custom op's fake implementation.

Shape legend: B batch, nh query heads, nh_kv kv heads, Lq new queries, S cache slots, hs head size.
"""

from __future__ import annotations

import pytest
import torch

from arvid.kernels import AttentionArgumentError, decode_attention, decode_attention_reference, flash_attention
from arvid.kernels.decode import choose_num_splits, decode_forward
from arvid.kernels.reference import decode_mask, error_bound, max_error

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def floor_for(dtype: torch.dtype) -> float:
    return 1e-4 if (DEVICE == "cpu" and dtype == torch.float32) else 1e-5


@pytest.fixture(autouse=True)
def triton_backend(monkeypatch):
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "triton")


def ring_buffer(lengths: list[int], S: int, Lq: int, sinks: int = 0):
    """cache_pos (B, S) and q_pos (B, Lq) of samples that have written lengths[b] tokens into a ring
    buffer of S slots (the first `sinks` slots pinned to positions 0..sinks-1, the rest wrapping),
    the queries being the last Lq of those tokens (their own keys already written)."""
    cache_pos = torch.full((len(lengths), S), -1, dtype=torch.int64)
    q_pos = torch.zeros(len(lengths), Lq, dtype=torch.int64)
    ring = S - sinks
    for b, n in enumerate(lengths):
        pinned = torch.arange(min(n, sinks))
        cache_pos[b, : len(pinned)] = pinned
        rest = torch.arange(min(n, max(sinks, n - ring)), n)  # the newest positions the ring still holds
        cache_pos[b, sinks + (rest - sinks) % ring] = rest
        q_pos[b] = torch.arange(n - Lq, n)
    return cache_pos.to(DEVICE), q_pos.to(DEVICE)


def make_qkv(B, nh, nh_kv, Lq, S, hs, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, nh, Lq, hs, generator=g)  # (B, nh, Lq, hs)
    k = torch.randn(B, nh_kv, S, hs, generator=g)  # (B, nh_kv, S, hs)
    v = torch.randn(B, nh_kv, S, hs, generator=g)
    return [t.to(DEVICE, dtype) for t in (q, k, v)]


def check(out, q, k, v, cache_pos, q_pos, **mask):
    ref = decode_attention_reference(q, k, v, cache_pos, q_pos, **mask)
    torch_err = decode_attention_reference(q, k, v, cache_pos, q_pos, upcast=False, **mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert not torch.isnan(out).any()
    err, bound = max_error(out, ref), error_bound(ref, torch_err, 3.0, floor_for(q.dtype))
    assert err <= bound, f"max error {err:.3g} > bound {bound:.3g}"


# (lengths per sample, S, nh, nh_kv, Lq, hs, dtype, window, sinks): wrapped buffers (written
# length > S), half-empty buffers, per-sample lengths, grouped-query heads, windows with sinks.
CASES = [
    ([250], 100, 4, 4, 1, 32, torch.float32, None, 0),
    ([250, 37, 100], 100, 4, 2, 1, 64, torch.float32, None, 0),
    ([300, 61], 77, 8, 2, 4, 64, torch.float16, 40, 0),
    ([1000, 20], 96, 4, 1, 16, 32, torch.float32, 64, 4),
    ([90, 15, 33, 200], 50, 2, 2, 3, 128, torch.float16, 20, 3),
    ([129], 129, 2, 1, 5, 128, torch.float32, None, 0),
]


@pytest.mark.parametrize("lengths,S,nh,nh_kv,Lq,hs,dtype,window,sinks", CASES)
def test_split_counts_agree_with_reference(lengths, S, nh, nh_kv, Lq, hs, dtype, window, sinks):
    q, k, v = make_qkv(len(lengths), nh, nh_kv, Lq, S, hs, dtype)
    cache_pos, q_pos = ring_buffer(lengths, S, Lq, sinks)
    outs = []
    for splits in (1, 3, None):
        out = decode_attention(q, k, v, cache_pos, q_pos, window=window, sinks=sinks, num_splits=splits)
        check(out, q, k, v, cache_pos, q_pos, window=window, sinks=sinks)
        outs.append(out.float())
    assert max_error(outs[0], outs[1]) <= (1e-5 if dtype == torch.float32 else 2e-3)  # merge costs ~1 rounding


def test_empty_cache_and_empty_splits_give_zeros_not_nan():
    """Sample 0 has an empty cache; sample 1 fills 5 of 64 slots, so most of its 7 splits are empty."""
    q, k, v = make_qkv(2, 2, 1, 2, 64, 32, torch.float32)
    cache_pos = torch.full((2, 64), -1, dtype=torch.int32, device=DEVICE)
    cache_pos[1, 40:45] = torch.arange(5, dtype=torch.int32)
    q_pos = torch.tensor([[0, 1], [4, 5]], device=DEVICE)
    out = decode_attention(q, k, v, cache_pos, q_pos, num_splits=7)
    assert not torch.isnan(out).any()
    assert out[0].abs().max().item() == 0.0
    check(out, q, k, v, cache_pos, q_pos)
    q_pos_before = torch.tensor([[0, 1], [-3, -2]], device=DEVICE)  # queries before every cached position
    assert decode_attention(q, k, v, cache_pos, q_pos_before, num_splits=3).abs().max().item() == 0.0


def test_cached_decoding_equals_flash_attention_over_the_sequence():
    """A wrapped window-sized ring buffer holds everything a windowed query sees, so decoding the
    last Lq tokens against it equals flash_attention over the whole sequence."""
    L, Lq, window, sinks, S = 150, 4, 24, 3, 32
    q, k, v = make_qkv(1, 4, 2, L, L, 64, torch.float32)
    full = flash_attention(q, k, v, window=window, sinks=sinks)  # (1, 4, L, hs)
    cache_pos, q_pos = ring_buffer([L], S, Lq, sinks)
    slots = cache_pos[0]  # the position each slot holds, all filled
    k_cache, v_cache = k[:, :, slots], v[:, :, slots]  # (1, 2, S, hs), wrapped order
    out = decode_attention(q[:, :, -Lq:], k_cache, v_cache, cache_pos, q_pos, window=window, sinks=sinks, num_splits=2)
    assert max_error(out, full[:, :, -Lq:]) <= 1e-4


# A whole latent frame of queries against the ring (masked decoding): frames of F tokens, the queries being
# one frame (or a frame and a half, a chunk crossing a frame's end), a window of W frames and sink frames.
# (lengths, S, nh, nh_kv, Lq, hs, dtype, frame, window frames, sink frames)
FRAME_CASES = [
    ([30 * 9], 30 * 4 + 29, 4, 2, 30, 32, torch.float32, 30, 3, 1),  # a 6x5 frame, a wrapped ring
    ([16 * 7, 16 * 3], 16 * 5, 2, 1, 16, 64, torch.float16, 16, 4, 0),
    ([13 * 11 - 6], 13 * 6, 4, 4, 20, 32, torch.float32, 13, 4, 1),  # ends mid-frame: queries span two frames
]


@pytest.mark.parametrize("lengths,S,nh,nh_kv,Lq,hs,dtype,frame,w,s", FRAME_CASES)
def test_frame_queries_against_the_ring_match_reference(lengths, S, nh, nh_kv, Lq, hs, dtype, frame, w, s):
    q, k, v = make_qkv(len(lengths), nh, nh_kv, Lq, S, hs, dtype)
    cache_pos, q_pos = ring_buffer(lengths, S, Lq, s * frame)
    mask = dict(window=w * frame, sinks=s * frame, frame=frame)
    for splits in (1, 3):
        check(decode_attention(q, k, v, cache_pos, q_pos, num_splits=splits, **mask), q, k, v, cache_pos, q_pos, **mask)
    # a query sees its whole frame: the frame's last key is visible to its first query (token rule: not)
    seen = decode_mask(cache_pos, q_pos, frame=frame, **{k: v for k, v in mask.items() if k != "frame"})
    first = int((q_pos[0] % frame == 0).nonzero()[0])  # the first query that starts a frame
    last_key = int(q_pos[0, first]) + frame - 1
    if last_key <= int(q_pos[0, -1]):
        slot = int((cache_pos[0] == last_key).nonzero()[0])
        assert seen[0, 0, first, slot] and not decode_mask(cache_pos, q_pos, mask["window"], mask["sinks"])[0, 0, first, slot]


def test_frame_decoding_equals_frame_causal_flash_attention():
    """A ring of W frames + one frame - 1 slots holds all that a frame's queries see: decoding the last frame
    against it equals frame-causal flash_attention over the whole sequence."""
    F, W, s, T = 12, 3, 1, 9
    L, S = F * T, s * F + W * F + F - 1
    q, k, v = make_qkv(1, 4, 2, L, L, 32, torch.float32)
    full = flash_attention(q, k, v, window=W * F, sinks=s * F, frame=F)
    cache_pos, q_pos = ring_buffer([L], S, F, s * F)
    slots = cache_pos[0].clamp(min=0)
    out = decode_attention(q[:, :, -F:], k[:, :, slots], v[:, :, slots], cache_pos, q_pos, window=W * F, sinks=s * F,
                           frame=F, num_splits=2)
    assert max_error(out, full[:, :, -F:]) <= 1e-4


def test_slot_order_does_not_matter():
    q, k, v = make_qkv(2, 4, 2, 3, 70, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([180, 50], 70, 3)
    perm = torch.randperm(70, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    a = decode_attention(q, k, v, cache_pos, q_pos, window=30, sinks=2, num_splits=2)
    b = decode_attention(q, k[:, :, perm], v[:, :, perm], cache_pos[:, perm], q_pos, window=30, sinks=2, num_splits=2)
    assert max_error(a, b) <= 1e-5


def test_small_tiles_and_int32_positions():
    q, k, v = make_qkv(2, 8, 2, 6, 45, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([100, 30], 45, 6)
    out = decode_forward(q, k, v, cache_pos.int(), q_pos.int(), 20, 2, 0.2, 4, block_n=16)
    check(out, q, k, v, cache_pos, q_pos, window=20, sinks=2, scale=0.2)


def test_gradients_take_the_pytorch_path():
    q, k, v = make_qkv(1, 2, 1, 2, 20, 32, torch.float32)
    q.requires_grad_()
    cache_pos, q_pos = ring_buffer([30], 20, 2)
    out = decode_attention(q, k, v, cache_pos, q_pos, window=8)
    (grad,) = torch.autograd.grad(out.sum(), q)
    q_ref = q.detach().requires_grad_()
    (want,) = torch.autograd.grad(decode_attention_reference(q_ref, k, v, cache_pos, q_pos, window=8).sum(), q_ref)
    assert max_error(grad, want) <= 1e-5


def test_split_heuristic_stays_in_range():
    q, k, v = make_qkv(1, 4, 1, 1, 1000, 32, torch.float32)
    assert 1 <= choose_num_splits(q, k) <= 64
    q1, k1, _ = make_qkv(1, 4, 1, 1, 16, 32, torch.float32)
    assert choose_num_splits(q1, k1) == 1


def test_custom_op_fake_implementation():
    q, k, v = make_qkv(1, 2, 1, 2, 20, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([33], 20, 2)
    torch.library.opcheck(torch.ops.arvid.decode_attention.default, (q, k, v, cache_pos, q_pos, 8, 1, 0.2, 2, 1),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph_traces_through_the_op():
    q, k, v = make_qkv(1, 2, 1, 1, 20, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([25], 20, 1)
    step = torch.compile(lambda *a: decode_attention(*a, window=8, sinks=1), fullgraph=True, backend="aot_eager")
    check(step(q, k, v, cache_pos, q_pos), q, k, v, cache_pos, q_pos, window=8, sinks=1)


def _bad(**change):
    q, k, v = make_qkv(1, 2, 1, 2, 8, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([5], 8, 2)
    args = dict(q=q, k_cache=k, v_cache=v, cache_pos=cache_pos, q_pos=q_pos)
    args.update(change)
    kwargs = {key: args.pop(key) for key in ("window", "num_splits") if key in args}
    return args, kwargs


@pytest.mark.parametrize(
    "change,match",
    [
        ({"q": torch.zeros(1, 2, 513, 32)}, "1 to 512"),
        ({"cache_pos": torch.zeros(1, 9, dtype=torch.int64)}, r"expected \(1, 8\)"),
        ({"cache_pos": torch.zeros(1, 8)}, "int32 or int64"),
        ({"q_pos": torch.zeros(2, 2, dtype=torch.int64)}, r"expected \(1, 2\)"),
        ({"num_splits": 0}, "num_splits=0"),
        ({"window": -2}, "window=-2"),
    ],
)
def test_bad_arguments_raise_clear_errors(change, match):
    change = {key: val.to(DEVICE) if isinstance(val, torch.Tensor) else val for key, val in change.items()}
    args, kwargs = _bad(**change)
    with pytest.raises(AttentionArgumentError, match=match):
        decode_attention(*args.values(), **kwargs)


def test_pytorch_path_builds_the_same_mask(monkeypatch):
    q, k, v = make_qkv(3, 4, 2, 4, 40, 32, torch.float32)
    cache_pos, q_pos = ring_buffer([100, 7, 0], 40, 4, sinks=2)
    q_pos[2] = torch.arange(4)  # a sample with nothing cached yet
    triton_out = decode_attention(q, k, v, cache_pos, q_pos, window=16, sinks=2, num_splits=2)
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "pytorch")
    torch_out = decode_attention(q, k, v, cache_pos, q_pos, window=16, sinks=2)
    assert max_error(triton_out, torch_out) <= 1e-4
    assert not decode_mask(cache_pos, q_pos, 16, 2)[2].any() and torch_out[2].abs().max().item() == 0.0
