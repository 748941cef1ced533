"""The two decoding kinds side by side: frames/s of `Arvid.generate` (what `arvid generate` runs) with a raster
and a masked generator of the same size, the same tokenizer, batch 1.

    python -m pytest benchmarks/bench_decoding.py --benchmark-enable
    arvid bench generation [--quick]

Both generators have the architecture of the shipped default generator (speed does not depend on the weights,
so they are built untrained here). The masked one decodes each latent frame in `Sampling`'s default number of
steps (8) and in 12, alone and with the guidance its model card's screens used (guidance runs every pass on a
conditioned and an unconditioned row). Each runs at arvid's default thread choice (one thread for the raster
model's token steps; the free cores for the masked model's frame steps). Group:
  decoding kinds          baseline raster at its default decoding. On the CPU with PyTorch attention; on a
                          GPU, the default path.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from arvid.generator import Generator, Sampling
from arvid.kernels import use_backend
from arvid.pipeline import Arvid

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


@pytest.fixture(scope="module")
def shipped() -> Arvid:
    return Arvid.from_pretrained(device="cpu")


def build(shipped: Arvid, decoding: str) -> Arvid:
    torch.manual_seed(0)
    cfg = dataclasses.replace(shipped.generator.config, decoding=decoding)
    return Arvid(shipped.tokenizer, Generator(cfg), DEVICE)


CASES = {"raster": ("raster", {}), "masked": ("masked", {"steps": Sampling().steps}),
         "masked, 12 steps": ("masked", {"steps": 12}),
         "masked, guidance 2": ("masked", {"steps": Sampling().steps, "guidance": 2.0}),
         "masked, 12 steps, guidance 3": ("masked", {"steps": 12, "guidance": 3.0})}


@pytest.mark.parametrize("case", list(CASES))
def bench_decoding_kinds(benchmark, shipped, quick, case):
    benchmark.group = "decoding kinds: arvid generate frames/s, same model size"
    decoding, settings = CASES[case]
    model = build(shipped, decoding)
    frames = 5 if benchmark.disabled else 9 if quick else 33

    def run():
        clip = model.generate(frames, seed=0, labels=[3, 7], **settings)
        if CUDA:
            torch.cuda.synchronize()
        return clip

    with use_backend("auto" if CUDA else "pytorch"):
        clip = benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1,
                                  warmup_rounds=0 if benchmark.disabled else 1)
    assert clip.shape[1] == frames
    cfg = model.generator.config
    benchmark.extra_info.update({"device": torch.cuda.get_device_name() if CUDA else "cpu",
                                 "model": f"{cfg.n_layer} layers, d_model {cfg.d_model} (untrained)", "batch": 1,
                                 "decoding": decoding, **settings,
                                 "threads": model.thread_count(), "frames": frames, "baseline": case == "raster"})
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["frames_per_s"] = frames / stats.stats.median
