"""The generator model and its KV cache: the full forward follows the documented mask and rotations,
the cached decode equals the full forward (also after the ring buffer wrapped and far past the
training length), the cache has fixed memory, and model files round-trip."""

import json

import numpy as np
import pytest
import torch

import arvid.generator.model as model_module
from arvid.errors import ArvidError
from arvid.generator import Generator, GeneratorConfig, KVCache, prefill, slot_inputs, window_logits
from arvid.generator import rope
from arvid.train.tokens import TokenDataset, write_token_dataset
from arvid.kernels import use_backend
from arvid.kernels.reference import masked_attention_reference


@pytest.fixture(autouse=True)
def fast_cpu():
    """The PyTorch attention path (not the Triton interpreter), one thread (tiny ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("pytorch"), torch.no_grad():
        yield
    torch.set_num_threads(threads)


def sharp_model(seed=0, **overrides) -> Generator:
    """A tiny model with large weights: peaked attention, so a wrong mask or rotation shows."""
    torch.manual_seed(seed)
    model = Generator(GeneratorConfig.from_name("tiny", **overrides)).eval()
    for p in model.parameters():
        if p.ndim == 2:
            p.normal_(0, p.shape[-1] ** -0.5)
    return model


def random_inputs(cfg, batch, frames, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (batch, frames, cfg.latent_h, cfg.latent_w), generator=g)
    return slot_inputs(tokens, cfg.bos_token)  # (B, N)


def bruteforce_attention(cfg, q, k, v):
    """The documented semantics, one query at a time: slot p sees j <= p with p - j < W·F or j < sinks,
    and the sink keys are moved in time by rope.sink_shift of p's frame."""
    N = q.shape[2]
    j = torch.arange(N)
    out = torch.empty_like(q)
    for p in range(N):
        shift = rope.sink_shift(cfg, torch.tensor(p // cfg.frame_tokens))
        kp = k.clone()
        kp[:, :, : cfg.sinks] = rope.rotate(k[:, :, : cfg.sinks], *rope.time_rotation(cfg, shift))
        mask = (j <= p) & ((p - j < cfg.window) | (j < cfg.sinks))
        out[:, :, p: p + 1] = masked_attention_reference(q[:, :, p: p + 1], kp, v, mask)
    return out


@pytest.mark.parametrize("sinks", [0, 1, 2])
def test_full_forward_follows_the_documented_mask_and_rotations(monkeypatch, sinks):
    model = sharp_model(sink_frames=sinks)
    inputs = random_inputs(model.config, 2, 9)[:, :-5]  # a partial last frame
    fast = model(inputs)
    monkeypatch.setattr(model_module, "windowed_attention", bruteforce_attention)
    slow = model(inputs)
    assert fast.shape == (2, inputs.shape[1], model.config.vocab_size)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


def test_cached_decode_equals_full_forward_after_the_ring_wrapped():
    model = sharp_model(num_classes=10, labels_per_clip=2)
    cfg = model.config
    inputs = random_inputs(cfg, 2, 11)  # 176 slots; the ring holds 16 sink + 63 slots: wraps twice
    labels = torch.tensor([[1, 2], [3, 10]])  # 10: the null label
    full = model(inputs, labels)
    cache = KVCache.allocate(cfg, 2)
    chunks, p, sizes = [], 0, [1, 3, 16, 5, 7, 2]
    while p < inputs.shape[1]:
        n = min(sizes[len(chunks) % len(sizes)], cfg.frame_tokens - p % cfg.frame_tokens)
        chunks.append(model.decode(inputs[:, p: p + n], torch.arange(p, p + n), cache, labels))
        p += n
    assert int(cache.pos.max()) == inputs.shape[1] - 1 and inputs.shape[1] > cache.pos.shape[1] * 2
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-4, rtol=1e-4)


def test_decode_after_prefill_matches_and_labels_matter():
    model = sharp_model(num_classes=10, labels_per_clip=2)
    inputs = random_inputs(model.config, 1, 8)
    labels = torch.tensor([[4, 5]])
    cache = KVCache.allocate(model.config, 1)
    prefill(model, cache, inputs[:, :-1], labels)
    last = model.decode(inputs[:, -1:], torch.tensor([inputs.shape[1] - 1]), cache, labels)[:, -1]
    torch.testing.assert_close(last, model(inputs, labels)[:, -1], atol=1e-4, rtol=1e-4)
    assert (model(inputs, torch.tensor([[4, 6]]))[:, -1] - last).abs().max() > 1e-3
    torch.testing.assert_close(model(inputs, None), model(inputs, model.null_labels(1)))


def test_window_recompute_equals_full_forward():
    model = sharp_model()
    inputs = random_inputs(model.config, 2, 12)
    full = model(inputs)
    for p in (20, 95, 130, 150, inputs.shape[1] - 1):  # before and after the receptive field is cut
        torch.testing.assert_close(window_logits(model, inputs[:, : p + 1], None), full[:, p], atol=1e-4, rtol=1e-4)


def test_far_past_the_training_length_cache_is_fixed_and_outputs_stay_in_distribution():
    """20x the window: the cache keeps its tensors, logits stay finite, and with a stationary input
    (every frame after the sinks the same) the logits at frame 60 equal those at frame 10: sinks keep
    their distance, nothing depends on absolute time."""
    model = sharp_model()
    cfg = model.config
    F = cfg.frame_tokens
    frames = 20 * cfg.window_frames
    g = torch.Generator().manual_seed(3)
    first, still = (torch.randint(0, cfg.vocab_size, (1, 1, F), generator=g) for _ in range(2))
    tokens = torch.cat([first, still.expand(1, frames - 1, F)], dim=1)  # (1, t, F)
    inputs = slot_inputs(tokens, cfg.bos_token)
    cache = KVCache.allocate(cfg, 1)
    before = [(t.data_ptr(), t.shape) for t in cache.tensors()]
    nbytes = cache.nbytes
    logits = []
    for p in range(frames * F):
        logits.append(model.decode(inputs[:, p: p + 1], torch.tensor([p]), cache)[:, -1])
    assert [(t.data_ptr(), t.shape) for t in cache.tensors()] == before and cache.nbytes == nbytes
    assert nbytes == KVCache.allocate(cfg, 1).nbytes  # set by the window, not the clip
    logits = torch.stack(logits, 1).view(1, frames, F, -1)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:, -1], logits[:, 10], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[0, -1, -1], window_logits(model, inputs, None)[0], atol=1e-4, rtol=1e-4)


def test_config_presets_and_validation():
    cfg = GeneratorConfig.from_name("tiny")
    assert (cfg.frame_tokens, cfg.window, cfg.sinks, cfg.head_size) == (16, 48, 16, 8)
    assert GeneratorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for name in ("mnist", "small", "base"):
        GeneratorConfig.from_name(name)
    with pytest.raises(ArvidError, match="unknown generator preset"):
        GeneratorConfig.from_name("huge")
    with pytest.raises(ArvidError, match="n_head"):
        GeneratorConfig.from_name("tiny", n_head=3)
    with pytest.raises(ArvidError, match="num_classes"):
        GeneratorConfig.from_name("tiny", num_classes=10)
    bad = {**cfg.to_dict(), "n_layer": "2"}
    with pytest.raises(ArvidError, match="'n_layer' must be int"):
        GeneratorConfig.from_dict(bad)
    with pytest.raises(ArvidError, match="unknown keys"):
        GeneratorConfig.from_dict({**cfg.to_dict(), "evil": 1})


def test_save_and_load_round_trip(tmp_path):
    model = sharp_model(num_classes=10, labels_per_clip=2)
    model.save_pretrained(tmp_path / "gen")
    again = Generator.from_pretrained(tmp_path / "gen")
    inputs, labels = random_inputs(model.config, 1, 3), torch.tensor([[1, 2]])
    assert again.config == model.config
    torch.testing.assert_close(again(inputs, labels), model(inputs, labels), atol=0, rtol=0)
    envelope = json.loads((tmp_path / "gen" / "config.json").read_text())
    envelope["config"]["window_frames"] = -1
    (tmp_path / "gen" / "config.json").write_text(json.dumps(envelope))
    with pytest.raises(ArvidError, match="window_frames"):
        Generator.from_pretrained(tmp_path / "gen")


def test_token_dataset_round_trip_and_bad_files(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 32, size=(5, 6, 4, 4))
    labels = np.arange(10).reshape(5, 2)
    data = write_token_dataset(tmp_path / "tok", tokens, labels, vocab_size=32, num_classes=10)
    assert (data.num_clips, data.frames, data.latent_hw) == (5, 6, (4, 4))
    assert isinstance(data.tokens, np.memmap)
    x, y = data.windows(np.random.default_rng(1), 3, 4)
    assert x.shape == (3, 4, 4, 4) and x.dtype == torch.int64 and y.shape == (3, 2)
    clip = int(np.flatnonzero((labels == y[0].numpy()).all(1))[0])
    assert any((tokens[clip, s: s + 4] == x[0].numpy()).all() for s in range(3))
    with pytest.raises(ArvidError, match="do not fit"):
        data.windows(np.random.default_rng(1), 1, 7)
    write_token_dataset(tmp_path / "big", tokens + 40, labels, vocab_size=72, num_classes=10)
    meta = json.loads((tmp_path / "big" / "meta.json").read_text())
    (tmp_path / "big" / "meta.json").write_text(json.dumps({**meta, "vocab_size": 32}))
    with pytest.raises(ArvidError, match="outside the vocabulary"):
        TokenDataset(tmp_path / "big")
    (tmp_path / "tok" / "tokens.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ArvidError, match="tokens.npy"):
        TokenDataset(tmp_path / "tok")
    with pytest.raises(ArvidError, match="meta.json is missing"):
        TokenDataset(tmp_path)
