"""Generation speed: the KV cache against recomputing the window, and time per latent frame as
the clip grows.

    python -m pytest benchmarks/bench_generator.py --benchmark-enable      # measure
    python -m pytest benchmarks/bench_generator.py --benchmark-disable     # one quick pass (CI)

Groups (side by side, one device, one thread on the CPU, PyTorch attention path):
  tokens/s     decode_one_token through the cache vs `window_logits`, which recomputes everything the
               next token depends on (sinks + the last n_layer·W frames) for every token: the same
               tokens (tests/test_sampler.py), so the ratio is the cache's worth.
  frame time   seconds to sample one latent frame (F tokens) at frame 16 and at frame 512: flat,
               because the ring buffer holds W frames whatever the clip length. The cache is brought
               to frame N by prefilling the sinks and the last ring of positions, the state it
               has after generating N frames (older positions are gone from a ring anyway).
Each result's extra_info holds tokens/s, the device and the cache's bytes.
"""

from __future__ import annotations

import pytest
import torch

from arvid.generator import Generator, GeneratorConfig, KVCache, Sampling, decode_one_token, prefill, slot_inputs
from arvid.generator.sampler import sample, window_logits
from arvid.kernels import use_backend

CONFIG = dict(vocab_size=1024, latent_h=8, latent_w=8, n_layer=4, n_head=4, n_kv_head=2, d_model=128,
              mlp_hidden=352, window_frames=4, sink_frames=1)  # 64 tokens per latent frame
SAMPLING = Sampling(temperature=1.0, top_k=100)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(**CONFIG)).eval()


@pytest.fixture(autouse=True)
def setting():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("pytorch"), torch.no_grad():
        yield
    torch.set_num_threads(threads)


def inputs_until(model, frames: int) -> torch.Tensor:
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (1, frames, cfg.latent_h, cfg.latent_w), generator=g)
    return slot_inputs(tokens, cfg.bos_token)  # (1, frames·F)


def cache_at(model, frame: int) -> tuple[KVCache, torch.Tensor]:
    """A cache in the state of having generated `frame` latent frames, and all the inputs so far."""
    cfg = model.config
    inputs = inputs_until(model, frame + 1)
    cache = KVCache.allocate(cfg, 1)
    n = frame * cfg.frame_tokens
    prefill(model, cache, inputs[:, : cfg.sinks], None)
    start = max(cfg.sinks, n - cache.ring)
    prefill(model, cache, inputs[:, start:n], None, start=start)
    return cache, inputs


def cached_tokens(model, cache, inputs, first: int, count: int):
    noise = torch.empty(count, 1, model.config.vocab_size).exponential_(generator=torch.Generator().manual_seed(0))
    pos = torch.tensor([first])
    prev = inputs[:, first: first + 1]
    for i in range(count):
        prev = decode_one_token(model, cache, prev, pos, None, noise[i], SAMPLING)[:, None]
        pos += 1


def recomputed_tokens(model, inputs, first: int, count: int):
    noise = torch.empty(count, 1, model.config.vocab_size).exponential_(generator=torch.Generator().manual_seed(0))
    history = inputs[:, : first + 1]
    for i in range(count):
        token = sample(window_logits(model, history, None), noise[i], SAMPLING)
        history = torch.cat([history, token[:, None]], dim=1)


def record(benchmark, tokens: int, cache: KVCache | None = None):
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads(), tokens=tokens)
    if cache is not None:
        benchmark.extra_info["cache_bytes"] = cache.nbytes
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.mean > 0:
        benchmark.extra_info["tokens_per_s"] = tokens / stats.stats.mean


@pytest.mark.benchmark(group="generator tokens/s: cache vs recompute")
def bench_decode_with_cache(benchmark, model):
    frame = 16
    first = frame * model.config.frame_tokens
    count = model.config.frame_tokens
    state = {}

    def setup():
        state["cache"], state["inputs"] = cache_at(model, frame)

    benchmark.pedantic(lambda: cached_tokens(model, state["cache"], state["inputs"], first, count),
                       setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, count, state["cache"])


@pytest.mark.benchmark(group="generator tokens/s: cache vs recompute")
def bench_decode_recomputing_the_window(benchmark, model):
    frame = 16
    first = frame * model.config.frame_tokens
    count = 8
    inputs = inputs_until(model, frame + 1)
    benchmark.pedantic(lambda: recomputed_tokens(model, inputs, first, count), rounds=3, iterations=1,
                       warmup_rounds=1)
    record(benchmark, count)


@pytest.mark.benchmark(group="generator seconds per latent frame")
@pytest.mark.parametrize("frame", [16, 512])
def bench_time_per_latent_frame(benchmark, model, frame):
    first = frame * model.config.frame_tokens
    count = model.config.frame_tokens
    state = {}

    def setup():
        state["cache"], state["inputs"] = cache_at(model, frame)

    benchmark.pedantic(lambda: cached_tokens(model, state["cache"], state["inputs"], first, count),
                       setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, count, state["cache"])
    benchmark.extra_info["frame"] = frame
