"""Generation through `Arvid`: frames/s and tokens/s at batch 1 and a larger batch; time per latent
frame and peak memory as one clip grows from latent frame 16 to latent frame 1,024.

    python -m pytest benchmarks/bench_pipeline.py --benchmark-enable      # measure
    python -m pytest benchmarks/bench_pipeline.py --benchmark-disable     # one quick pass (CI)
    arvid bench generation [--quick]                                      # with a summary and plots

The models are untrained (speed does not depend on the weights) and built here. On the CPU: the
"tiny" tokenizer and generator (16x16 pixels, 4x4 tokens per latent frame, τ = 2), PyTorch attention,
one thread. On a GPU: the "mnist" pair (64x64 pixels, 8x8 tokens per latent frame) on the default
path (Triton kernels, decode step compiled). Groups:
  pipeline throughput     `Arvid.generate` of one clip at batch 1 and at a larger batch: frames/s and
                          tokens/s. Baseline batch 1, so the ratio is what batching is worth.
  pipeline clip growth    one `Arvid.stream` clip timed a latent frame at a time at latent frames
                          16 ... 1,024, with the peak memory over those frames (CUDA: max allocated;
                          CPU: resident set size sampled after each frame). Baseline frame 16: the
                          KV cache and the decoder state have fixed sizes, so both must stay flat.
  decode step (CUDA)      `arvid.generator.generate` eager against compiled; the first call, which
                          holds the compile time, is reported apart as warmup_s.
extra_info holds the figures (frames_per_s, tokens_per_s, seconds_per_latent_frame,
peak_memory_bytes), the device and the model. `--arvid-quick` shrinks the sweep.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from arvid.generator import Generator, GeneratorConfig, KVCache, generate
from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import Tokenizer, TokenizerConfig, new_latent_frames

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
PRESET = "mnist" if CUDA else "tiny"  # same name for the tokenizer and the generator presets
CLIP_ROUNDS = 8  # latent frames timed at each clip length (a median: the machine may be shared)
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: the compiled decode step uses CUDA graphs")


def checkpoints(config) -> list[int]:
    """Latent frames at which the clip is timed: the full sweep, --arvid-quick, or one pass (CI)."""
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        return [16, 24]
    if config.getoption("arvid_quick", default=False):
        return [16, 64, 256, 1024]
    return [16, 32, 64, 128, 256, 512, 1024]


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ == "bench_clip_growth":
        metafunc.parametrize("frame", checkpoints(metafunc.config))


@pytest.fixture(scope="module")
def model() -> Arvid:
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset(PRESET))
    gen = Generator(GeneratorConfig.from_name(PRESET, vocab_size=tok.codebook_size))
    return Arvid(tok, gen, DEVICE)


@pytest.fixture(autouse=True)
def setting():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("auto" if CUDA else "pytorch"):
        yield
    torch.set_num_threads(threads)


def device_name() -> str:
    return torch.cuda.get_device_name() if CUDA else "cpu"


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def memory_now() -> int:
    """Bytes in use now: CUDA max allocated since the last reset, or the process's resident set."""
    if CUDA:
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/statm") as f:  # Linux; fields are pages: size resident shared ...
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_seconds(benchmark) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median


def describe(benchmark, model: Arvid, **info) -> None:
    cfg = model.generator.config
    benchmark.extra_info.update({"device": device_name(), "model": f"{PRESET} (untrained)", "batch": 1,
                                 "frame_tokens": cfg.frame_tokens, "threads": torch.get_num_threads(), **info})


# ----------------------------------------------------------------------------------------------
# Throughput: one clip per call, batch 1 against a larger batch.


def larger_batch(config) -> int:
    return 4 if config.getoption("arvid_quick", default=False) or not CUDA else 16


@pytest.mark.parametrize("size", ["batch 1", "larger batch"])
def bench_throughput(benchmark, model, quick, request, size):
    batch = 1 if size == "batch 1" else larger_batch(request.config)
    tau = model.temporal_factor
    frames = 1 + tau * (8 if quick else 16)  # 9 or 17 latent frames
    latent = new_latent_frames(frames, model.temporal_factor, after_context=False)
    benchmark.group = "pipeline throughput"

    def run():
        clip = model.generate(frames, batch=batch, seed=0)
        synchronize()
        return clip

    warmup = None
    if not benchmark.disabled:
        start = time.perf_counter()
        run()
        warmup = time.perf_counter() - start
    clip = benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1)
    assert clip.shape == (batch, frames, *model.resolution, model.channels)
    describe(benchmark, model, batch=batch, frames=frames, latent_frames=latent, baseline=batch == 1)
    seconds = median_seconds(benchmark)
    if seconds:
        benchmark.extra_info.update(frames_per_s=batch * frames / seconds,
                                    tokens_per_s=batch * latent * model.generator.config.frame_tokens / seconds,
                                    warmup_s=warmup)


# ----------------------------------------------------------------------------------------------
# Clip growth: one long clip, consumed a latent frame at a time.


class ClipStream:
    """A clip from `Arvid.stream`, pulled one latent frame (1, then τ frames) at a time."""

    def __init__(self, model: Arvid, latent_frames: int):
        self.model, self.latent_frames = model, latent_frames
        self.start()

    def start(self) -> None:
        tau = self.model.temporal_factor
        self.frames = self.model.stream(1 + tau * (self.latent_frames - 1), seed=0)
        self.done = 0  # latent frames decoded so far

    def next_latent_frame(self) -> None:
        for _ in range(1 if self.done == 0 else self.model.temporal_factor):
            next(self.frames)
        self.done += 1

    def advance_to(self, latent_frame: int) -> None:
        if self.done > latent_frame:  # cases ran out of order: begin a new clip
            self.close()
            self.start()
        while self.done < latent_frame:
            self.next_latent_frame()

    def close(self) -> None:
        self.frames.close()  # also leaves the stream's inference mode


@pytest.fixture(scope="module")
def clip(model, request):
    stream = ClipStream(model, max(checkpoints(request.config)) + CLIP_ROUNDS + 2)
    yield stream
    stream.close()


def bench_clip_growth(benchmark, model, clip, request, frame):
    benchmark.group = "pipeline clip growth"
    clip.advance_to(frame)
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    peak = [memory_now()]

    def one_latent_frame():
        clip.next_latent_frame()
        synchronize()
        peak.append(memory_now())

    benchmark.pedantic(one_latent_frame, rounds=CLIP_ROUNDS, iterations=1, warmup_rounds=1)
    assert clip.done > frame
    cfg = model.generator.config
    describe(benchmark, model, frame=frame, peak_memory_bytes=max(peak),
             memory_kind="cuda max allocated" if CUDA else "resident set size",
             kv_cache_bytes=KVCache.allocate(cfg, 1, "meta").nbytes, baseline=frame == checkpoints(request.config)[0])
    seconds = median_seconds(benchmark)
    if seconds:
        benchmark.extra_info.update(seconds_per_latent_frame=seconds, tokens_per_s=cfg.frame_tokens / seconds)


# ----------------------------------------------------------------------------------------------
# CUDA: the decode step eager against compiled (torch.compile, CUDA graphs).


@needs_cuda
@pytest.mark.parametrize("mode", ["eager", "compiled"])
def bench_decode_step_compiled(benchmark, model, quick, mode):
    benchmark.group = "generator tokens/s: eager vs compiled"
    latent = 4 if quick else 16
    cfg = model.generator.config

    def run():
        for _ in generate(model.generator, latent, batch=1, seed=0, compile=mode == "compiled"):
            pass
        synchronize()

    start = time.perf_counter()
    run()  # the first call compiles (and captures the CUDA graphs); timed apart
    warmup = time.perf_counter() - start
    benchmark.pedantic(run, rounds=3 if quick else 5, iterations=1, warmup_rounds=1)
    describe(benchmark, model, latent_frames=latent, warmup_s=warmup, baseline=mode == "eager")
    seconds = median_seconds(benchmark)
    if seconds:
        benchmark.extra_info["tokens_per_s"] = latent * cfg.frame_tokens / seconds
