"""flash_attention: the Triton kernels (interpreted on CPU, compiled on a GPU) against the float32
reference, under the tolerance rule of ANCHORS.md; gradients against autograd through the reference;
the dispatch between Triton and PyTorch; argument checks; torch.compile tracing.

Shape legend: B batch, nh query heads, nh_kv kv heads, Lq queries, Lk keys, hs head size.
"""

from __future__ import annotations

import os

import pytest
import torch

from arvid.errors import ArvidError
from arvid.kernels import AttentionArgumentError, attention_backend, attention_reference, flash_attention, use_backend
from arvid.kernels.flash import flash_backward, flash_forward
from arvid.kernels.reference import error_bound, max_error

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])


def floor_for(dtype: torch.dtype) -> float:
    """Absolute floor of the tolerance rule: 1e-5, or 1e-4 for float32 on the CPU."""
    return 1e-4 if (DEVICE == "cpu" and dtype == torch.float32) else 1e-5


def make_qkv(B, nh, nh_kv, Lq, Lk, hs, dtype, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, nh, Lq, hs, generator=g)  # (B, nh, Lq, hs)
    k = torch.randn(B, nh_kv, Lk, hs, generator=g)  # (B, nh_kv, Lk, hs)
    v = torch.randn(B, nh_kv, Lk, hs, generator=g)
    return [t.to(DEVICE, dtype).requires_grad_(requires_grad) for t in (q, k, v)]


def assert_matches_reference(out, q, k, v, multiple=2.0, **mask):
    ref = attention_reference(q, k, v, **mask)  # float32 inside
    torch_err = attention_reference(q, k, v, upcast=False, **mask)  # PyTorch's own rounding in q's dtype
    assert out.shape == q.shape and out.dtype == q.dtype
    assert not torch.isnan(out).any()
    err, bound = max_error(out, ref), error_bound(ref, torch_err, multiple, floor_for(q.dtype))
    assert err <= bound, f"max error {err:.3g} > bound {bound:.3g}"


@pytest.fixture(autouse=True)
def triton_backend(monkeypatch):
    """Force the Triton kernels (compiled on a GPU, interpreted on CPU) unless a test says otherwise."""
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "triton")


# (B, nh, nh_kv, Lq, Lk, hs, dtype, causal, window, sinks): odd lengths, a cached prefix whose
# diagonal is not block-aligned, windows with and without sinks, grouped-query heads, hs 32/64/128.
FORWARD_CASES = [
    (1, 2, 2, 1, 1, 32, torch.float32, True, None, 0),
    (1, 4, 2, 17, 17, 32, torch.float32, True, None, 0),
    (2, 2, 1, 97, 97, 64, torch.float16, True, None, 0),
    (1, 2, 2, 37, 217, 64, torch.float32, True, None, 0),
    (1, 4, 1, 1, 257, 128, torch.float16, True, None, 0),
    (1, 2, 2, 1000, 1025, 32, torch.float32, True, 100, 0),
    (1, 2, 1, 64, 100, 32, torch.float32, True, 16, 0),
    (2, 4, 2, 57, 120, 64, torch.float16, True, 9, 5),
    (1, 4, 1, 33, 33, 128, torch.float32, True, 7, 20),
    (1, 2, 2, 40, 100, 32, torch.float32, False, None, 0),
    (1, 2, 2, 17, 17, 64, torch.float16, False, None, 0),
]


@pytest.mark.parametrize("B,nh,nh_kv,Lq,Lk,hs,dtype,causal,window,sinks", FORWARD_CASES)
def test_forward_matches_reference(B, nh, nh_kv, Lq, Lk, hs, dtype, causal, window, sinks):
    q, k, v = make_qkv(B, nh, nh_kv, Lq, Lk, hs, dtype)
    out = flash_attention(q, k, v, causal=causal, window=window, sinks=sinks)
    assert_matches_reference(out, q, k, v, causal=causal, window=window, sinks=sinks)


@pytest.mark.parametrize("Lq,Lk,window,sinks", [(37, 83, None, 0), (50, 50, 13, 3), (21, 70, 5, 18), (40, 40, 18, 0)])
def test_small_blocks_cross_many_tiles(Lq, Lk, window, sinks):
    """16x16 tiles: the diagonal and the window's edges cross several key blocks, sinks span two.
    (40, 40, 18): query 32, the first of a block, is the last to see key 15 (tight backward range)."""
    q, k, v = make_qkv(2, 2, 1, Lq, Lk, 32, torch.float32)
    out, lse = flash_forward(q, k, v, True, window, sinks, 0.3, block_m=16, block_n=16)
    assert_matches_reference(out, q, k, v, window=window, sinks=sinks, scale=0.3)
    assert torch.isfinite(lse).all()
    do = torch.randn_like(out)
    grads = flash_backward(do, q, k, v, out, lse, True, window, sinks, 0.3, block_m=16, block_n=16)
    q2, k2, v2 = (t.detach().requires_grad_() for t in (q, k, v))
    ref = attention_reference(q2, k2, v2, window=window, sinks=sinks, scale=0.3)
    for got, want in zip(grads, torch.autograd.grad(ref, (q2, k2, v2), do)):
        assert max_error(got, want) <= 1e-4


@pytest.mark.parametrize(
    "B,nh,nh_kv,Lq,Lk,hs,dtype,window,sinks",
    [
        (1, 2, 1, 17, 17, 32, torch.float32, None, 0),
        (2, 4, 2, 33, 97, 64, torch.float32, 20, 3),
        (1, 2, 2, 45, 45, 128, torch.float16, 9, 0),
        (1, 4, 1, 70, 70, 64, torch.float16, 8, 10),
    ],
)
def test_gradients_match_reference(B, nh, nh_kv, Lq, Lk, hs, dtype, window, sinks):
    q, k, v = make_qkv(B, nh, nh_kv, Lq, Lk, hs, dtype, requires_grad=True)
    do = torch.randn(B, nh, Lq, hs, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
    grads = torch.autograd.grad(flash_attention(q, k, v, window=window, sinks=sinks), (q, k, v), do)
    ref = torch.autograd.grad(attention_reference(q, k, v, window=window, sinks=sinks), (q, k, v), do)
    low = torch.autograd.grad(attention_reference(q, k, v, window=window, sinks=sinks, upcast=False), (q, k, v), do)
    for name, got, want, torch_err in zip("qkv", grads, ref, low):
        assert got.shape == want.shape and got.dtype == dtype
        err, bound = max_error(got, want), error_bound(want, torch_err, 2.0, floor_for(dtype))
        assert err <= bound, f"d{name}: max error {err:.3g} > bound {bound:.3g}"


# Frame-causal (frame = F > 1): a query sees its whole latent frame and the earlier frames in the window.
# (B, nh, nh_kv, Lq, Lk, hs, dtype, window, sinks, frame): a 6x5-token frame (30), frames not aligned to the
# 16- or 64-wide blocks, a cached prefix ending mid-frame, a window of two frames, one sink frame.
FRAME_CASES = [
    (1, 2, 1, 90, 90, 32, torch.float32, None, 0, 30),
    (2, 4, 2, 45, 150, 32, torch.float32, 60, 30, 30),
    (1, 2, 2, 64, 200, 64, torch.float16, 3 * 16, 16, 16),
    (1, 2, 1, 7, 49, 32, torch.float32, 14, 7, 7),
]


@pytest.mark.parametrize("B,nh,nh_kv,Lq,Lk,hs,dtype,window,sinks,frame", FRAME_CASES)
def test_frame_causal_forward_and_backward_match_reference(B, nh, nh_kv, Lq, Lk, hs, dtype, window, sinks, frame):
    q, k, v = make_qkv(B, nh, nh_kv, Lq, Lk, hs, dtype, requires_grad=True)
    mask = dict(window=window, sinks=sinks, frame=frame)
    out = flash_attention(q, k, v, **mask)
    assert_matches_reference(out, q, k, v, **mask)
    do = torch.randn(B, nh, Lq, hs, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
    grads = torch.autograd.grad(out, (q, k, v), do)
    ref = torch.autograd.grad(attention_reference(q, k, v, **mask), (q, k, v), do)
    low = torch.autograd.grad(attention_reference(q, k, v, upcast=False, **mask), (q, k, v), do)
    for name, got, want, torch_err in zip("qkv", grads, ref, low):
        err, bound = max_error(got, want), error_bound(want, torch_err, 2.0, floor_for(dtype))
        assert err <= bound, f"d{name}: max error {err:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("Lq,Lk,window,sinks,frame", [(60, 60, 20, 10, 10), (35, 91, 26, 13, 13), (30, 30, None, 0, 6)])
def test_frame_causal_small_blocks_cross_frames(Lq, Lk, window, sinks, frame):
    """16x16 tiles straddle frames of 6, 10 and 13 tokens: the block ranges of forward, dq and dk/dv must
    reach each frame's last key from its first query and the window's last frame from its first key."""
    q, k, v = make_qkv(2, 2, 1, Lq, Lk, 32, torch.float32)
    mask = dict(window=window, sinks=sinks, frame=frame)
    out, lse = flash_forward(q, k, v, True, window, sinks, 0.3, block_m=16, block_n=16, frame=frame)
    assert_matches_reference(out, q, k, v, scale=0.3, **mask)
    do = torch.randn_like(out)
    grads = flash_backward(do, q, k, v, out, lse, True, window, sinks, 0.3, block_m=16, block_n=16, frame=frame)
    q2, k2, v2 = (t.detach().requires_grad_() for t in (q, k, v))
    ref = attention_reference(q2, k2, v2, scale=0.3, **mask)
    for got, want in zip(grads, torch.autograd.grad(ref, (q2, k2, v2), do)):
        assert max_error(got, want) <= 1e-4


def test_frame_one_is_the_token_rule_and_frames_see_their_own_future():
    from arvid.kernels.reference import flash_mask

    assert torch.equal(flash_mask(40, 40, window=9, sinks=3, frame=1), flash_mask(40, 40, window=9, sinks=3))
    m = flash_mask(12, 12, window=8, sinks=0, frame=4)  # three frames of 4, a window of two frames
    assert m[0, 3] and not m[3, 4]  # a query sees the end of its own frame, not the next frame
    assert m[8, 4] and not m[8, 3] and m[11, 4]  # frame 2 sees frame 1 and itself, not frame 0
    m = flash_mask(12, 12, window=4, sinks=4, frame=4)
    assert m[11, 0] and not m[11, 5] and m[11, 10]  # the sink frame stays; the window is frame 2 alone


def test_strided_inputs_and_custom_scale():
    """q, k, v as views of (B, L, heads, hs) tensors, the layout a model produces before transposing."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 29, 4, 32, generator=g).to(DEVICE).transpose(1, 2)  # (B, nh, Lq, hs), strided
    kv = torch.randn(2, 41, 2, 2, 32, generator=g).to(DEVICE)  # (B, Lk, 2, nh_kv, hs)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    out = flash_attention(q, k, v, window=11, sinks=2, scale=0.05)
    assert_matches_reference(out, q, k, v, window=11, sinks=2, scale=0.05)


def test_triton_and_pytorch_paths_agree_forward_and_backward():
    q, k, v = make_qkv(1, 4, 2, 23, 50, 64, torch.float32, requires_grad=True)
    outs = {}
    for backend in ("triton", "pytorch"):
        with use_backend(backend):
            out = flash_attention(q, k, v, window=12, sinks=4)
            outs[backend] = (out, *torch.autograd.grad(out.square().sum(), (q, k, v)))
    for a, b in zip(outs["triton"], outs["pytorch"]):
        assert max_error(a, b) <= 1e-4


@pytest.mark.parametrize("Lq,Lk,causal", [(23, 50, True), (50, 50, True), (17, 40, False)])
def test_the_pytorch_path_without_a_dense_mask_matches_the_reference(Lq, Lk, causal):
    """A plain causal (or no) mask goes to SDPA's own causal kernels, bottom-right aligned, GQA, with gradients."""
    q, k, v = make_qkv(1, 4, 2, Lq, Lk, 32, torch.float32, requires_grad=True)
    with use_backend("pytorch"):
        out = flash_attention(q, k, v, causal=causal)
    ref = attention_reference(q, k, v, causal=causal)
    assert max_error(out, ref) <= 1e-5
    for a, b in zip(torch.autograd.grad(out.square().sum(), (q, k, v)), torch.autograd.grad(ref.square().sum(), (q, k, v))):
        assert max_error(a, b) <= 1e-4


def test_custom_op_fake_and_autograd_registration():
    q, k, v = make_qkv(1, 2, 1, 17, 20, 32, torch.float32, requires_grad=True)
    torch.library.opcheck(torch.ops.arvid.flash_attention.default, (q, k, v, True, 8, 2, 0.2, 1))
    torch.library.opcheck(torch.ops.arvid.flash_attention.default, (q, k, v, True, 8, 4, 0.2, 4))


def test_torch_compile_fullgraph_traces_through_the_op():
    q, k, v = make_qkv(1, 2, 1, 9, 9, 32, torch.float32, requires_grad=True)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def loss(q, k, v):
        return flash_attention(q, k, v, window=4, sinks=1).square().sum()

    got = torch.autograd.grad(loss(q, k, v), (q, k, v))
    want = torch.autograd.grad(attention_reference(q, k, v, window=4, sinks=1).square().sum(), (q, k, v))
    for a, b in zip(got, want):
        assert max_error(a, b) <= 1e-4


@pytest.mark.parametrize(
    "shapes,kwargs,match",
    [
        (((1, 2, 9, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {}, "Lq <= Lk"),
        (((1, 3, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {}, "multiple of the kv heads"),
        (((1, 2, 4, 32), (1, 2, 8, 64), (1, 2, 8, 64)), {}, "head size"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 7, 32)), {}, "same shape"),
        (((2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {}, "4-d tensor"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {"window": 0}, "window=0"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {"sinks": -1}, "sinks=-1"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {"causal": False, "window": 3}, "causal=True"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {"causal": False, "frame": 4}, "causal=True"),
        (((1, 2, 4, 32), (1, 2, 8, 32), (1, 2, 8, 32)), {"frame": 0}, "frame=0"),
    ],
)
def test_bad_arguments_raise_clear_errors(shapes, kwargs, match):
    q, k, v = (torch.zeros(s, device=DEVICE) for s in shapes)
    with pytest.raises(AttentionArgumentError, match=match):
        flash_attention(q, k, v, **kwargs)


def test_mixed_dtypes_and_integer_inputs_are_rejected():
    q, k, v = make_qkv(1, 2, 2, 4, 4, 32, torch.float32)
    with pytest.raises(AttentionArgumentError, match="dtypes differ"):
        flash_attention(q, k.half(), v)
    with pytest.raises(AttentionArgumentError, match="dtype torch.int64"):
        flash_attention(q.long(), k, v)


@pytest.mark.skipif(DEVICE == "cuda", reason="the interpreter's bfloat16 limit applies on CPU only")
def test_bfloat16_under_the_interpreter_is_refused_not_wrong():
    q, k, v = make_qkv(1, 2, 2, 4, 4, 32, torch.bfloat16)
    with pytest.raises(AttentionArgumentError, match="bfloat16"):
        flash_attention(q, k, v)
    with use_backend("pytorch"):  # the PyTorch path takes bfloat16
        assert flash_attention(q, k, v).dtype == torch.bfloat16


def test_backend_choice_env_var_and_context_manager(monkeypatch):
    auto = "triton" if DEVICE == "cuda" else "triton-interpreter"
    assert attention_backend(DEVICE) == auto  # ARVID_ATTENTION_BACKEND=triton (fixture)
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "pytorch")  # read at call time
    assert attention_backend(DEVICE) == "pytorch"
    with use_backend("auto"):  # the context manager wins over the variable
        assert attention_backend(DEVICE) == auto
        with use_backend("pytorch"):
            assert attention_backend(DEVICE) == "pytorch"
        assert attention_backend(DEVICE) == auto
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "bogus")
    with pytest.raises(ArvidError, match="bogus"):
        attention_backend(DEVICE)
    with pytest.raises(ArvidError, match="unknown"):
        with use_backend("cudnn"):
            pass


def test_the_automatic_choice_on_a_gpu_follows_the_measured_table_then_the_rule():
    from arvid.kernels.dispatch import _table, case_class, measured_choice

    assert _table(), "dispatch_table.json is shipped and parses"
    # measured on the H200 (issue 25): SDPA wins plain causal attention and one-token decoding
    assert measured_choice(case_class("flash", hs=128, length=16384)) == "pytorch"
    assert measured_choice(case_class("decode", hs=128, length=8192, queries=1, batch=8)) == "pytorch"
    assert measured_choice(case_class("decode", hs=128, length=65536, queries=4, batch=32)) == "triton"
    # no row: SDPA where it needs no dense mask, the kernels where it would
    assert measured_choice(case_class("flash", hs=32, length=100, masked=True)) == "triton"
    assert measured_choice(case_class("decode", hs=32, length=100, queries=64, batch=2)) == "triton"
    assert measured_choice(case_class("flash", hs=32, length=100)) == "pytorch"


def test_tune_refuses_without_a_gpu(capsys):
    if DEVICE == "cuda":
        pytest.skip("on a GPU the tuner measures (a minute or two)")
    from arvid.kernels.tune import main as tune

    assert tune(["--out", "/dev/null"]) == 2 and "this machine has none" in capsys.readouterr().out


def test_env_var_selects_the_pytorch_path(monkeypatch):
    """ARVID_ATTENTION_BACKEND=pytorch routes calls to SDPA, which takes bfloat16 even on CPU."""
    monkeypatch.setenv("ARVID_ATTENTION_BACKEND", "pytorch")
    q, k, v = make_qkv(1, 2, 2, 5, 5, 32, torch.bfloat16)
    out = flash_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    assert max_error(out, attention_reference(q, k, v)) <= 2e-2


@pytest.mark.skipif(DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") != "1", reason="interpreter-only check")
def test_interpreter_is_what_runs_on_cpu():
    with use_backend("auto"):
        assert attention_backend("cpu") == "triton-interpreter"


AOT_COMPILE = r'''
import os, sys
os.environ.pop("TRITON_INTERPRET", None)
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from arvid.kernels import decode, flash

def build(fn, types, consts, opts):
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in fn.arg_names}
    kernel = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=opts)
    assert kernel.metadata.shared <= 228 * 1024, (fn.__name__, kernel.metadata.shared)

dt, hs = torch.float16, 128
ptrs = {n: "*fp16" for n in ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV")}
ptrs.update(Lse="*fp32", Delta="*fp32", PartOut="*fp32", PartLse="*fp32", CachePos="*i32", QPos="*i64",
            scale="fp32", scale_log2="fp32")
meta = dict(CAUSAL=True, HAS_WINDOW=True, HAS_FRAME=True, BLOCK_D=hs, DOT_PRECISION="tf32", Lq=1)  # Lq == 1 specialises
for kernels, config in (((flash._flash_fwd_kernel,), flash._fwd_config(hs, dt, torch.device("cuda"))),
                        ((flash._flash_bwd_dq_kernel, flash._flash_bwd_dkdv_kernel), flash._bwd_config(hs, dt, torch.device("cuda")))):
    opts = {k: config.pop(k) for k in ("num_warps", "num_stages")}
    for fn in kernels:
        build(fn, ptrs, {**meta, **config}, opts)
build(decode._decode_split_kernel, ptrs, dict(HAS_WINDOW=True, HAS_FRAME=True, BLOCK_M=16, BLOCK_N=64, BLOCK_D=hs,
                                             DOT_PRECISION="tf32"),
      dict(num_warps=4, num_stages=3))
build(decode._decode_merge_kernel, ptrs, dict(BLOCK_P=4, BLOCK_D=hs), {})
print("compiled")
'''


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU the kernels are compiled by the other tests")
def test_kernels_compile_for_sm90_without_a_gpu(tmp_path):
    """The interpreter forgives what the compiler refuses (type changes across branches, shared
    memory): compile every kernel to an H100 binary (ptxas ships with triton), no GPU needed."""
    import subprocess
    import sys

    ptxas = os.path.join(os.path.dirname(__import__("triton").__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip("this triton wheel ships no ptxas")
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from a cache
    done = subprocess.run([sys.executable, "-c", AOT_COMPILE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]


def test_a_table_written_by_tune_is_read_with_its_record_fields(tmp_path, monkeypatch):
    """tune's rows carry the ratio and the shape they were measured at: the key is the case class alone."""
    import json

    from arvid.kernels import dispatch

    table = tmp_path / "dispatch_table.json"
    table.write_text(json.dumps({"rows": [{"op": "flash", "mask": "causal", "hs": 64, "length": "short",
                                           "choice": "triton", "ratio": 1.3, "shape": [4, 16, 2048, 64]}]}))
    monkeypatch.setattr(dispatch, "TABLE_FILE", table)
    dispatch._table.cache_clear()
    try:
        assert dispatch.measured_choice(dispatch.case_class("flash", hs=64, length=2048)) == "triton"
        table.write_text("{not json")
        dispatch._table.cache_clear()
        with pytest.warns(UserWarning, match="falls back to its rule"):
            assert dispatch.measured_choice(dispatch.case_class("flash", hs=64, length=2048)) == "pytorch"
    finally:
        dispatch._table.cache_clear()
