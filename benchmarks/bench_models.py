"""The shipped models side by side: `Arvid.generate` of one clip with two labels at batch 1, as `arvid generate
--frames 64 --label 3,7` makes it (each model's recommended decoding, one thread on the CPU).

    python -m pytest benchmarks/bench_models.py --benchmark-enable
    arvid bench generation -k shipped                                    # with a summary

Group:
  shipped models, batch 1   frames/s of each model folder shipped in arvid/weights/: the default, and the
                            per-frame model it replaced (every frame coded anew as 8x8 tokens), which is the
                            baseline, so the ratio is how many times faster the default makes a clip here.
Both are timed in the same run, after one untimed clip each (weights loaded, caches warm).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

import arvid
from arvid.kernels import use_backend
from arvid.pipeline import Arvid

WEIGHTS = Path(arvid.__file__).parent / "weights"
SHIPPED = ("per-frame", "default")  # the baseline first
LABELS = [3, 7]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def frames_for(config, quick: bool) -> int:
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        return 16  # one quick pass (CI)
    return 32 if quick else 64


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("auto" if DEVICE == "cuda" else "pytorch"):
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", SHIPPED)
def bench_shipped_model(benchmark, quick, request, name):
    folder = WEIGHTS / name
    if not (folder / "generator").is_dir():
        pytest.skip(f"this build ships no {name} model ({folder})")
    model = Arvid.from_pretrained(folder, device=DEVICE, threads=1)
    frames = frames_for(request.config, quick)
    benchmark.group = "shipped models, batch 1"

    def run():
        clip = model.generate(frames, labels=LABELS, seed=0)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return clip

    warmup = None
    if not benchmark.disabled:
        start = time.perf_counter()
        run()
        warmup = time.perf_counter() - start
    clip = benchmark.pedantic(run, rounds=2 if quick else 3, iterations=1)
    assert clip.shape == (1, frames, *model.resolution, model.channels)
    kind = "layered" if model.tokenizer.first_frames == 0 else "per-frame"
    benchmark.extra_info.update({"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
                                 "model": f"{name} ({kind})", "batch": 1, "frames": frames,
                                 "threads": torch.get_num_threads(), "baseline": name == SHIPPED[0],
                                 "warmup_s": warmup})
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["frames_per_s"] = frames / stats.stats.median
