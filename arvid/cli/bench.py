"""`arvid bench`: run the benchmark suite and write its JSON, a Markdown summary and plots."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Time arvid against baselines measured in the same run. The terminal shows the progress, then one line
per case: its figure with its unit and the figure against its group's baseline (> 1: better). Into
--out DIR go summary.md (a full table per group: figure, baseline figure, figure vs baseline, time per
call, memory, device), benchmark.json (pytest-benchmark's JSON, readable by `pytest-benchmark compare`),
pytest.log (the run's whole output) and PNG plots (throughput against length, arvid against the
baselines, time per latent frame and memory against clip length).

Suites: kernels (flash and decode attention against scaled_dot_product_attention), generation
(tokens/s and frames/s, KV cache against recomputation, time and memory as a clip grows to latent
frame 1,024), tokenizer (encode and decode frames/s, whole clip and streaming), all.
On the CPU, CUDA-only cases are skipped and the PyTorch attention paths are timed (never the
Triton interpreter). --quick shrinks the sweeps: the reference run took 124 s on 2 idle CPU cores,
longer on a busy machine. The suite ships with the source checkout and needs the test extras
(pip install -e ".[test]").
"""


COMMANDS = {"bench": "time arvid's kernels, generation and tokenizer against baselines; write a summary and plots"}


def register(sub) -> None:
    p = sub.add_parser("bench", help=COMMANDS["bench"],
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", nargs="?", default="all", metavar="SUITE",
                   help="kernels, generation, tokenizer or all (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sweeps and fewer rounds (about two minutes on 2 idle CPU cores)")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU if there is one), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--out", default="out/bench", metavar="DIR", help="folder for the results (default: out/bench)")
    p.add_argument("-k", dest="select", metavar="EXPR", help="only the benchmarks matching this pytest -k expression")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from arvid.benchmark import BenchRequest, run_bench

    outcome = run_bench(BenchRequest(suite=args.suite, quick=args.quick, device=args.device, out=args.out,
                                     select=args.select))
    print("\n" + "\n".join(outcome.summary))
    print(f"\nwrote {len(outcome.files)} file(s) into {outcome.out} (the full tables in summary.md, the run's "
          "whole output in pytest.log):")
    for path in outcome.files:
        print(f"  {path}")
    if outcome.failed:
        print(f"{len(outcome.failed)} benchmark(s) failed: {', '.join(outcome.failed)}")
    return outcome.returncode
