"""Generation on a busy machine: frames/s of `Arvid.generate` with one core kept busy by another process.

    python -m pytest benchmarks/bench_threads.py --benchmark-enable
    arvid bench generation [--quick]

The shipped default model generates a clip at batch 1 while a child process spins on one core (started before
each case and stopped after it), at arvid's default thread choice (`arvid.utils.threads`) against one and two
torch threads. Group:
  busy machine            baseline one thread; the default must not fall behind it (two threads do: every
                          parallel region waits for the thread the spinner displaced).
On a GPU it is skipped: the decode step does not run on the CPU's threads there.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import new_latent_frames

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU threads: the GPU path does not use them")


@pytest.fixture(scope="module")
def model() -> Arvid:
    return Arvid.from_pretrained(device="cpu")


@pytest.fixture
def busy_core():
    """One core kept busy by another process for the duration of the case."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let it be scheduled before the thread choice looks
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("threads", ["default", "1 thread", "2 threads"])
def bench_generation_beside_a_busy_core(benchmark, model, quick, busy_core, threads):
    benchmark.group = "busy machine: generation with one core busy"
    frames = 5 if benchmark.disabled else 9 if quick else 33
    model.threads = None if threads == "default" else int(threads[0])
    chosen = model.thread_count()

    def run():
        return model.generate(frames, seed=0, labels=[3, 7])

    with use_backend("pytorch"):
        clip = benchmark.pedantic(run, rounds=2 if quick else 3, iterations=1, warmup_rounds=0 if benchmark.disabled else 1)
    model.threads = None
    assert clip.shape[1] == frames
    benchmark.extra_info.update({"device": "cpu", "model": "the shipped default model", "batch": 1,
                                 "threads": chosen, "frames": frames, "baseline": threads == "1 thread",
                                 "latent_frames": new_latent_frames(frames, model.temporal_factor, after_context=False,
                                                                   first=model.tokenizer.first_frames),
                                 "decoding": model.generator.config.decoding})
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["frames_per_s"] = frames / stats.stats.median
