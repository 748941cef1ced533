"""Tokenizer speed: encode and decode frames/s, whole clip against streaming.

    python -m pytest benchmarks/bench_tokenizer.py --benchmark-enable      # measure
    python -m pytest benchmarks/bench_tokenizer.py --benchmark-disable     # one quick pass (CI)

The model is the "mnist" preset (τ=2, 8x8 tokens per 64x64 latent frame) with random weights (speed
does not depend on them), one thread on the CPU. Groups:
  encode   a 17-frame clip in one pass, and streamed one latent frame (τ frames) at a time
  decode   the same, from codes; streaming decode is what turns generated tokens into frames,
           and the generator needs it at >= 2 frames/s on 2 CPU cores
Each result's extra_info holds frames per call; frames/s = frames / mean time.
"""

from __future__ import annotations

import pytest
import torch

from arvid.tokenizer import Tokenizer, TokenizerConfig

FRAMES = 17


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig.preset("mnist")).eval()


@pytest.fixture(scope="module")
def video():
    return torch.rand(1, 1, FRAMES, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (B, C, T, H, W)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stream_encode(tok, video):
    enc = tok.encoder_stream(1)
    step = tok.temporal_factor
    return torch.cat([enc.push(video[:, :, :1])] + [enc.push(video[:, :, i:i + step])
                                                    for i in range(1, video.shape[2], step)], dim=1)


def stream_decode(tok, codes):
    dec = tok.decoder_stream(1)
    return torch.cat([dec.push(codes[:, i:i + 1]) for i in range(codes.shape[1])], dim=2)


@pytest.mark.benchmark(group="encode")
def bench_encode_whole(benchmark, tok, video):
    benchmark.extra_info["frames"] = FRAMES
    codes = benchmark(tok.encode, video)
    assert codes.shape == (1, 9, 8, 8)


@pytest.mark.benchmark(group="encode")
def bench_encode_streaming(benchmark, tok, video):
    benchmark.extra_info["frames"] = FRAMES
    codes = benchmark(stream_encode, tok, video)
    assert torch.equal(codes, tok.encode(video))


@pytest.mark.benchmark(group="decode")
def bench_decode_whole(benchmark, tok, video):
    codes = tok.encode(video)
    benchmark.extra_info["frames"] = FRAMES
    assert benchmark(tok.decode, codes).shape == video.shape


@pytest.mark.benchmark(group="decode")
def bench_decode_streaming(benchmark, tok, video):
    codes = tok.encode(video)
    benchmark.extra_info["frames"] = FRAMES
    frames = benchmark(stream_decode, tok, codes)
    assert (frames - tok.decode(codes)).abs().max() <= 1e-5
