"""Measure which attention path is fastest per case class on this GPU and write dispatch_table.json.

    python -m arvid.kernels.tune --out kernels/dispatch_table.json      # on a GPU; a minute or two

For each case class of `dispatch.case_class` it times arvid's Triton kernel and PyTorch's SDPA side by side on a
representative shape (bf16, the shapes of benchmarks/bench_kernels.py), in one run, and keeps the faster as the
class's choice, with the ratio (arvid over SDPA). Commit the file it writes, and its figures in the README.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from arvid.kernels.api import decode_attention, flash_attention
from arvid.kernels.dispatch import TABLE_FILE, case_class, use_backend
from arvid.kernels.reference import decode_mask, flash_mask, sdpa_causal

# (op, shape) -> one representative shape per case class
FLASH = [  # B, nh, L, hs, masked (window + sinks)
    (4, 16, 4096, 128, False), (1, 16, 16384, 128, False), (16, 32, 1024, 64, False), (1, 32, 16384, 64, False),
    (4, 16, 4096, 128, True), (1, 16, 16384, 128, True), (16, 32, 1024, 64, True), (1, 32, 16384, 64, True),
]
DECODE = [  # B, Lq, S (nh 32, nh_kv 8, hs 128)
    (1, 1, 2048), (1, 1, 8192), (16, 1, 65536), (4, 4, 65536), (1, 64, 8192), (4, 64, 65536),
]


def timed(fn, iters: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def flash_row(B: int, nh: int, L: int, hs: int, masked: bool) -> dict:
    q, k, v = (torch.randn(B, nh, L, hs, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    window, sinks = (L // 4, 64) if masked else (None, 0)
    with use_backend("triton"):
        arvid = timed(lambda: flash_attention(q, k, v, window=window, sinks=sinks))
    if masked:  # SDPA given the dense mask
        mask = flash_mask(L, L, window=window, sinks=sinks, device="cuda")
        sdpa = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    else:
        sdpa = timed(lambda: sdpa_causal(q, k, v, True))
    ratio = sdpa / arvid
    return {**case_class("flash", hs=hs, length=L, masked=masked), "ratio": round(ratio, 2),
            "choice": "triton" if ratio > 1 else "pytorch", "shape": [B, nh, L, hs]}


def decode_row(B: int, Lq: int, S: int) -> dict:
    nh, nh_kv, hs = 32, 8, 128
    q = torch.randn(B, nh, Lq, hs, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(B, nh_kv, S, hs, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cache_pos = torch.arange(S, device="cuda").expand(B, S).contiguous()
    q_pos = torch.arange(S - Lq, S, device="cuda").expand(B, Lq).contiguous()
    with torch.no_grad(), use_backend("triton"):
        arvid = timed(lambda: decode_attention(q, k, v, cache_pos, q_pos), 50)
        mask = decode_mask(cache_pos, q_pos)
        sdpa = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True), 50)
    ratio = sdpa / arvid
    return {**case_class("decode", hs=hs, length=S, queries=Lq, batch=B * nh_kv), "ratio": round(ratio, 2),
            "choice": "triton" if ratio > 1 else "pytorch", "shape": [B, Lq, S]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m arvid.kernels.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=TABLE_FILE, help="the table to write (default: the package's)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("python -m arvid.kernels.tune: error: it measures a GPU, and this machine has none", flush=True)
        return 2
    rows = [flash_row(*s) for s in FLASH] + [decode_row(*s) for s in DECODE]
    seen, kept = set(), []
    for r in rows:  # one row per class: the first measured
        key = tuple(sorted((k, v) for k, v in r.items() if k not in ("ratio", "choice", "shape")))
        if key not in seen:
            seen.add(key)
            kept.append(r)
    table = {"about": f"measured by python -m arvid.kernels.tune on {torch.cuda.get_device_name()} (torch "
                      f"{torch.__version__}, bf16); ratio = SDPA time / arvid time",
             "device": torch.cuda.get_device_name(), "rows": kept}
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    for r in kept:
        print(r)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
