"""`arvid generate`'s memory against the clip's length: the peak resident set of the whole command.

    python -m pytest benchmarks/bench_memory.py --benchmark-enable
    arvid bench generation [--quick]

Each case runs `arvid generate --frames N --out clip.mp4` with the shipped default model in a fresh process,
which reports its own peak resident set (`ru_maxrss`) when it exits. Frames stream into the video file as they
are made and the KV cache and the decoder state have fixed sizes, so the peak must not grow with N. Group:
  generate memory         baseline the shortest clip; 256 and 4,096 frames (--quick: 256 and 1,024).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = """
import resource, sys
from arvid.cli.main import main
code = main(sys.argv[1:])
print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
sys.exit(code)
"""


def lengths(config) -> list[int]:
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        return [8, 16]
    return [256, 1024] if config.getoption("arvid_quick", default=False) else [256, 4096]


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ == "bench_generate_peak_memory":
        metafunc.parametrize("frames", lengths(metafunc.config))


def bench_generate_peak_memory(benchmark, tmp_path, request, frames):
    benchmark.group = "generate memory: peak resident set against clip length"
    env = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch"}
    out = {}

    def run():
        done = subprocess.run([sys.executable, "-c", CHILD, "generate", "--frames", str(frames), "--label", "3,7",
                               "--out", str(tmp_path / "clip.mp4"), "--device", "cpu"],
                              capture_output=True, text=True, env=env, timeout=3600)
        assert done.returncode == 0, done.stderr[-2000:]
        out["kib"] = int(done.stdout.split("peak_rss_kib")[1].split()[0])

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"device": "cpu", "model": "the shipped default model", "frames": frames,
                                 "peak_memory_bytes": out["kib"] * 1024,
                                 "baseline": frames == min(lengths(request.config))})
