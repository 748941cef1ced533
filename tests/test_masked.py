"""The masked decoding kind: a latent frame's tokens decoded together (MaskGIT), frames one after another.

The invariants: a frame's logits from the two-stream training pass equal those of the KV cache at every step
of decoding; a masked frame sees the clean frames before it and its own frame, nothing else; cached decoding
draws the tokens of recomputing the receptive field; the schedule decides every token in `steps` passes; the
training task masks a cosine-distributed share of each frame and scores those tokens only.
"""

import numpy as np
import pytest
import torch

from arvid.errors import ArvidError
from arvid.generator import Generator, GeneratorConfig, KVCache, Sampling, generate, prefill
from arvid.generator.sampler import masked_schedule
from arvid.kernels import use_backend
from arvid.train.generator import mask_frames


@pytest.fixture(autouse=True)
def fast_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("pytorch"):
        yield
    torch.set_num_threads(threads)


def masked_model(sinks: int = 1, **overrides) -> Generator:
    """A tiny labelled masked model (4x4 tokens, window 3 frames) with large weights: every input matters."""
    torch.manual_seed(0)
    cfg = GeneratorConfig.from_name("tiny", num_classes=10, labels_per_clip=2, decoding="masked", sink_frames=sinks,
                                    **overrides)
    m = Generator(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    return m


def clip(model, frames, **kw) -> torch.Tensor:
    settings = {k: kw.pop(k) for k in list(kw) if k in Sampling.settings()}
    return torch.stack(list(generate(model, frames, Sampling(**settings), **kw)), dim=1)  # (B, t, h, w)


@pytest.mark.parametrize("sinks", [0, 1, 2])
def test_training_pass_equals_the_cache_frame_by_frame(sinks):
    """Masked frames after clean ones: the two-stream pass gives each frame the logits the KV cache gives it,
    past the window and the sinks' shift (T = 9 > W + s + 1)."""
    model = masked_model(sinks)
    cfg, F, T = model.config, model.config.frame_tokens, 9
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, cfg.vocab_size, (2, T * F), generator=g)
    inputs = torch.where(torch.rand(2, T * F, generator=g) < 0.5, cfg.mask_token, clean)
    labels = torch.tensor([[1, 2], [3, 10]])
    with torch.no_grad():
        full = model(inputs, labels, clean=clean)  # (B, N, V)
        cache = KVCache.allocate(cfg, 2)
        for t in range(T):
            pos = torch.arange(t * F, (t + 1) * F)
            step = model.decode(inputs[:, pos], pos, cache, labels)  # a step of frame t's decoding
            torch.testing.assert_close(step, full[:, pos], atol=1e-4, rtol=1e-4)
            model.decode(clean[:, pos], pos, cache, labels, logits=False)  # frame t decided: its clean tokens


def test_a_masked_frame_sees_the_clean_past_and_its_own_frame_only():
    model = masked_model(1)
    cfg, F, T = model.config, model.config.frame_tokens, 6
    g = torch.Generator().manual_seed(2)
    clean = torch.randint(0, cfg.vocab_size, (1, T * F), generator=g)
    inputs = clean.clone()
    inputs[:, ::3] = cfg.mask_token
    with torch.no_grad():
        base = model(inputs, None, clean=clean)
        t = 3  # change the masked inputs of frame 2 and the clean tokens of frame 4: frame 3 does not move
        other_inputs, other_clean = inputs.clone(), clean.clone()
        other_inputs[:, 2 * F:3 * F] = cfg.mask_token
        other_clean[:, 4 * F:] = (other_clean[:, 4 * F:] + 1) % cfg.vocab_size
        moved = model(other_inputs, None, clean=other_clean)
        torch.testing.assert_close(moved[:, t * F:(t + 1) * F], base[:, t * F:(t + 1) * F])
        # the clean tokens of frame 2 and the inputs of its own frame's last token do move it
        clean2 = clean.clone()
        clean2[:, 2 * F:3 * F] = (clean2[:, 2 * F:3 * F] + 1) % cfg.vocab_size
        assert not torch.allclose(model(inputs, None, clean=clean2)[:, t * F:(t + 1) * F], base[:, t * F:(t + 1) * F])
        inputs2 = inputs.clone()
        inputs2[:, (t + 1) * F - 1] = cfg.mask_token if inputs[0, (t + 1) * F - 1] != cfg.mask_token else 0
        assert not torch.allclose(model(inputs2, None, clean=clean)[:, t * F], base[:, t * F])  # within its frame
    with pytest.raises(ArvidError, match="whole latent frames"):
        model(inputs[:, :-1], None, clean=clean[:, :-1])


@pytest.mark.parametrize("sinks", [0, 1])
def test_cached_decoding_draws_the_tokens_of_recomputing(sinks):
    model = masked_model(sinks)
    context = torch.randint(0, 32, (2, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    for kw in (dict(temperature=0, labels=[[1, 2], [7, -1]], context=context),
               dict(batch=2, labels=[3, 4], seed=3, top_k=20, choice_temperature=2.0),
               dict(labels=[[1, 2], [3, 4]], seed=1, guidance=2.0, steps=3, context=context)):
        cached = clip(model, 8, **dict(kw))  # past the receptive field and the ring's wrap
        assert torch.equal(cached, clip(model, 8, use_cache=False, **dict(kw)))


def test_schedule_decides_every_token_and_steps_are_passes():
    assert masked_schedule(16, 1) == [0]
    assert masked_schedule(64, 8) == [62, 59, 53, 45, 35, 24, 12, 0]
    for F, K in ((16, 4), (30, 7), (64, 12)):
        sched = masked_schedule(F, K)
        assert sched[-1] == 0 and all(a >= b for a, b in zip(sched, sched[1:])) and sched[0] < F
    model = masked_model(1)
    calls = []
    decode = model.decode
    model.decode = lambda *a, **k: calls.append(k.get("logits", True)) or decode(*a, **k)
    try:
        clip(model, 2, labels=[1, 2], steps=3)
    finally:
        model.decode = decode
    assert calls == [True, True, True, False] * 2  # three passes a frame, then the frame into the cache


def test_seeds_greedy_and_guidance():
    model = masked_model(1)
    a = clip(model, 3, batch=2, labels=[3, 4], seed=5)
    assert a.shape == (2, 3, 4, 4) and int(a.max()) < model.config.vocab_size  # no mask token left
    assert torch.equal(a, clip(model, 3, batch=2, labels=[3, 4], seed=5))
    assert not torch.equal(a, clip(model, 3, batch=2, labels=[3, 4], seed=6))
    greedy = clip(model, 3, labels=[3, 4], temperature=0, choice_temperature=0)
    assert torch.equal(greedy, clip(model, 3, labels=[3, 4], seed=9, temperature=0, choice_temperature=0))
    assert torch.equal(clip(model, 3, labels=[3, 4], seed=2), clip(model, 3, labels=[3, 4], seed=2, guidance=1.0))
    assert not torch.equal(clip(model, 3, labels=[3, 4], seed=2), clip(model, 3, labels=[3, 4], seed=2, guidance=4.0))
    with pytest.raises(ArvidError, match="guidance 2 needs labels"):
        generate(model, 1, Sampling(guidance=2.0))


def test_context_is_continued_as_if_generated():
    model = masked_model(1)
    full = clip(model, 6, labels=[5, 6], temperature=0, choice_temperature=0)
    assert torch.equal(clip(model, 3, labels=[5, 6], temperature=0, choice_temperature=0, context=full[:, :3]),
                       full[:, 3:])


def test_a_partial_frame_starts_decided():
    """Known first tokens of the next frame are kept as given; the rest is drawn around them, with the cache
    as without it."""
    model = masked_model(1)
    kw = dict(labels=[5, 6], temperature=0, choice_temperature=0)
    full = clip(model, 3, **kw)
    partial = (full[:, 2].reshape(1, -1)[:, :5] + 1) % 32
    out = clip(model, 2, context=full[:, :2], partial=partial, **kw)
    assert torch.equal(out[:, 0].reshape(1, -1)[:, :5], partial)
    assert torch.equal(out, clip(model, 2, context=full[:, :2], partial=partial, use_cache=False, **kw))


def test_training_masks_a_cosine_share_of_each_frame():
    m = mask_frames(np.random.default_rng(0), 400, 6, 64)  # (B, T, F)
    share = m.mean(-1)
    assert m.shape == (400, 6, 64) and (m.sum(-1) >= 1).all()
    # r = cos(π/2·u): E[r] = 2/π, and P(r < 1/2) = 1/3
    assert abs(share.mean() - 2 / np.pi) < 0.02 and abs((share < 0.5).mean() - 1 / 3) < 0.03
    assert not np.array_equal(m[0, 0], m[0, 1])  # every frame draws its own


def test_the_pipeline_generates_and_extends_with_a_masked_model(tmp_path):
    from arvid.cli.main import main
    from arvid.pipeline import Arvid
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    tok = Tokenizer(TokenizerConfig.preset("tiny"))  # 16x16 frames -> 4x4 tokens, τ = 2
    gen = masked_model(1, vocab_size=tok.codebook_size)
    Arvid(tok, gen, "cpu", {"steps": 3}).save_pretrained(tmp_path / "m")
    model = Arvid.from_pretrained(tmp_path / "m", device="cpu")
    clip = model.generate(7, seed=1, labels=[3, 7], batch=2)
    assert clip.shape == (2, 7, 16, 16, 1)
    assert np.array_equal(clip, model.generate(7, seed=1, labels=[3, 7], batch=2))
    assert np.array_equal(np.stack(list(model.stream(7, seed=1, labels=[3, 7], batch=2)), axis=1), clip)
    assert not np.array_equal(clip, model.generate(7, seed=1, labels=[3, 7], batch=2, steps=5))  # the model's 3
    longer = model.extend(clip[0], 4, seed=0)
    assert longer.shape == (1, 11, 16, 16, 1) and np.array_equal(longer[0, :7], clip[0])
    assert main(["generate", "--model", str(tmp_path / "m"), "--frames", "5", "--steps", "2", "--label", "1,2",
                 "--out", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape == (5, 16, 16, 1)
    assert main(["generate", "--model", str(tmp_path / "m"), "--frames", "5", "--steps", "0",
                 "--out", str(tmp_path / "d.npy")]) == 2


def test_a_masked_config_refuses_frames_larger_than_one_decode_call():
    from arvid.errors import ArvidError
    from arvid.generator import GeneratorConfig

    GeneratorConfig.from_name("tiny", vocab_size=32, latent_h=16, latent_w=16, decoding="masked")  # 256: fine
    with pytest.raises(ArvidError, match="at most 512 tokens"):
        GeneratorConfig.from_name("tiny", vocab_size=32, latent_h=24, latent_w=24, decoding="masked")
    GeneratorConfig.from_name("tiny", vocab_size=32, latent_h=24, latent_w=24)  # raster decodes token by token
