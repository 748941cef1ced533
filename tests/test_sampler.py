"""The sampler: greedy with the cache equals greedy recomputing the window, seeds, top-k/top-p/min-p/
temperature, guidance, continuation of a context, and a decode step that traces as one graph; the one
`Sampling` value: its ranges, its "off" values, and `Sampling.build` from what users give."""

import pytest
import torch

from arvid.errors import ArvidError
from arvid.generator import (
    Generator,
    GeneratorConfig,
    KVCache,
    Sampling,
    decode_one_token,
    generate,
    logits_to_probs,
    sample,
)
from arvid.kernels import use_backend


@pytest.fixture(autouse=True)
def fast_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("pytorch"):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> Generator:
    """A tiny labelled model with large weights, so sampled tokens depend on everything."""
    torch.manual_seed(0)
    m = Generator(GeneratorConfig.from_name("tiny", num_classes=10, labels_per_clip=2)).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    return m


def clip(model, frames, **kw) -> torch.Tensor:
    """Generated latent frames (B, t, h, w); decoding settings among the keywords go into a Sampling."""
    settings = {k: kw.pop(k) for k in list(kw) if k in Sampling.settings()}
    return torch.stack(list(generate(model, frames, Sampling(**settings), **kw)), dim=1)


def test_greedy_with_cache_equals_greedy_recomputing_the_window(model):
    context = torch.randint(0, 32, (2, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    kw = dict(labels=[[1, 2], [7, -1]], temperature=0, context=context)
    cached = clip(model, 8, **kw)  # past the receptive field (2 layers x 3 frames + sinks)
    assert cached.shape == (2, 8, 4, 4) and cached.dtype == torch.int64
    assert torch.equal(cached, clip(model, 8, use_cache=False, **kw))
    # sampling too, where tokens vary more: the same noise gives the same tokens
    kw = dict(batch=2, labels=[[1, 2], [7, -1]], seed=3, top_k=20)
    cached = clip(model, 8, **kw)
    assert torch.equal(cached, clip(model, 8, use_cache=False, **kw))
    assert len(cached.unique()) > 8


def test_frames_are_yielded_one_at_a_time(model):
    stream = generate(model, 3, labels=[1, 2], seed=0)
    first = next(stream)
    assert first.shape == (1, 4, 4) and len(list(stream)) == 2


def test_same_seed_same_tokens_and_other_seed_other_tokens(model):
    a = clip(model, 3, batch=2, labels=[3, 4], seed=5)
    assert torch.equal(a, clip(model, 3, batch=2, labels=[3, 4], seed=5))
    assert not torch.equal(a, clip(model, 3, batch=2, labels=[3, 4], seed=6))
    assert not torch.equal(a[0], a[1])  # rows of a batch draw their own tokens


def test_top_k_1_equals_greedy(model):
    greedy = clip(model, 3, labels=[3, 4], temperature=0)
    assert torch.equal(clip(model, 3, labels=[3, 4], seed=9, temperature=1.5, top_k=1), greedy)
    assert torch.equal(clip(model, 3, labels=[3, 4], seed=9, top_p=1e-6), greedy)


def test_guidance_one_equals_no_guidance(model):
    plain = clip(model, 3, batch=2, labels=[3, 4], seed=2)
    assert torch.equal(clip(model, 3, batch=2, labels=[3, 4], seed=2, guidance=1.0), plain)
    assert not torch.equal(clip(model, 3, batch=2, labels=[3, 4], seed=2, guidance=4.0), plain)
    with pytest.raises(ArvidError, match="guidance 2 needs labels"):
        next(generate(model, 1, Sampling(guidance=2.0)))


def test_context_is_continued_as_if_generated(model):
    full = clip(model, 6, labels=[5, 6], temperature=0)
    assert torch.equal(clip(model, 3, labels=[5, 6], temperature=0, context=full[:, :3]), full[:, 3:])


def test_logits_to_probs_temperature_top_k_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    probs = lambda **kw: logits_to_probs(logits, Sampling(**kw))  # noqa: E731
    p = probs()
    torch.testing.assert_close(p, torch.softmax(logits, -1))
    entropy = lambda q: -(q * q.clamp_min(1e-30).log()).sum().item()  # noqa: E731
    assert entropy(probs(temperature=0.5)) < entropy(p) < entropy(probs(temperature=2.0))
    top3 = probs(top_k=3)
    assert (top3 > 0).sum() == 3 and torch.allclose(top3[0, :3], torch.softmax(logits[0, :3], -1))
    assert (probs(top_k=0) > 0).all()  # 0: off
    # top-p keeps the smallest prefix holding p: 0.61 needs the two best (0.53 + 0.20 of the mass)
    kept = probs(top_p=0.61) > 0
    assert kept.tolist() == [[True, True, False, False, False]]
    assert (probs(top_p=1.0) > 0).all()
    # min-p keeps tokens at least min_p times as likely as the best: e^-1 = 0.37 of it keeps the first two
    kept = probs(min_p=0.3) > 0
    assert kept.tolist() == [[True, True, False, False, False]]
    torch.testing.assert_close(probs(min_p=0.3)[0, :2], torch.softmax(logits[0, :2], -1))
    assert (probs(min_p=0.0) > 0).all() and (probs(min_p=1.0) > 0).sum() == 1
    # after the temperature: at 0.5 the second token is e^-2 = 0.14 of the best, so min-p 0.3 drops it
    assert (probs(temperature=0.5, min_p=0.3) > 0).sum() == 1


def test_sample_draws_tokens_with_their_probabilities():
    logits = torch.tensor([[1.0, 0.0, -1.0, -9.0]]).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    noise = torch.empty(20000, 4).exponential_(generator=g)
    tokens = sample(logits, noise, Sampling(temperature=1.0))
    freq = torch.bincount(tokens, minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.015, rtol=0)
    assert sample(logits, None, Sampling(temperature=0)).eq(0).all()
    for bad in (dict(temperature=-1), dict(top_k=-1), dict(top_k=2.5), dict(top_p=0.0), dict(guidance=-1),
                dict(min_p=-0.1), dict(min_p=1.5), dict(temperature=float("nan")), dict(guidance=float("inf")),
                dict(top_p=True)):
        with pytest.raises(ArvidError):
            Sampling(**bad)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("given", [1, 7, 15])
def test_a_partial_frame_is_completed_as_if_generated(model, given, use_cache):
    """The first `given` tokens of the next frame, known: greedy decoding completes that frame and goes on exactly as
    it did when it drew them itself, with guidance too (the unconditional rows read the same tokens)."""
    kw = dict(labels=[[5, 6], [1, -1]], batch=2, temperature=0, guidance=3.0)
    full = clip(model, 5, **kw)  # (2, 5, 4, 4)
    partial = full[:, 2].reshape(2, -1)[:, :given]
    out = clip(model, 3, context=full[:, :2], partial=partial, use_cache=use_cache, **kw)
    assert torch.equal(out, full[:, 2:])
    other = clip(model, 1, context=full[:, :2], partial=(partial + 1) % 32, **kw)  # other known tokens: kept
    assert torch.equal(other.reshape(2, -1)[:, :given], (partial + 1) % 32)


def test_bad_partial_frames_are_clear_errors(model):
    ctx = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ArvidError, match="a latent frame has 16"):
        next(generate(model, 1, context=ctx, partial=torch.zeros(2, 16, dtype=torch.long)))
    with pytest.raises(ArvidError, match="2 rows for a batch of 1|rows"):
        next(generate(model, 1, partial=torch.zeros(2, 3, dtype=torch.long)))
    with pytest.raises(ArvidError, match="integer tokens"):
        next(generate(model, 1, context=ctx, partial=torch.zeros(2, 3)))
    with pytest.raises(ArvidError, match="outside"):
        next(generate(model, 1, context=ctx, partial=torch.full((2, 3), 99)))


def test_bad_labels_and_context_are_clear_errors(model):
    with pytest.raises(ArvidError, match="out of range"):
        next(generate(model, 1, labels=[3, 10]))
    with pytest.raises(ArvidError, match="label"):
        next(generate(model, 1, batch=2, labels=[1, 2, 3]))
    with pytest.raises(ArvidError, match="latent tokens"):
        next(generate(model, 1, context=torch.zeros(1, 2, 3, 3, dtype=torch.long)))
    with pytest.raises(ArvidError, match="outside"):
        next(generate(model, 1, context=torch.full((1, 2, 4, 4), 99)))


def test_decode_step_traces_as_one_graph(model):
    """fullgraph=True: no graph break, so on a GPU the step compiles whole (CUDA graphs)."""
    cfg = model.config
    s = Sampling(temperature=1.0, top_k=5, top_p=0.9, guidance=2.0)
    labels = torch.tensor([[1, 2], [3, 4], [10, 10], [10, 10]])
    compiled = torch.compile(decode_one_token, backend="eager", fullgraph=True)
    caches = [KVCache.allocate(cfg, 4) for _ in range(2)]
    noise = torch.empty(2, cfg.vocab_size).exponential_(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in range(3):
            inputs = torch.full((4, 1), cfg.bos_token if p == 0 else p)
            pos = torch.tensor([p])
            a = compiled(model, caches[0], inputs, pos, labels, noise, s)
            b = decode_one_token(model, caches[1], inputs, pos, labels, noise, s)
            assert torch.equal(a, b)


def test_build_takes_given_then_recommended_then_default():
    recommended = {"top_p": 0.9, "guidance": 3.0}
    s = Sampling.build({"temperature": 0.5, "top_p": None}, recommended)
    assert (s.temperature, s.top_p, s.guidance, s.top_k, s.min_p) == (0.5, 0.9, 3.0, 0, 0.0)
    assert Sampling.build({"top_p": 1.0, "guidance": 1}, recommended) == Sampling()  # "off" values switch them off
    # guidance follows labels: the recommended scale applies only with them, a given one always (and is refused
    # later where the labels are known, by check_request)
    assert Sampling.build({}, recommended, labels=False) == Sampling(top_p=0.9)
    assert Sampling.build({"guidance": 2}, recommended, labels=False).guidance == 2
    with pytest.raises(ArvidError, match="--top-p must be in \\(0, 1\\]"):
        Sampling.build({"top_p": 1.5}, name=lambda k: "--" + k.replace("_", "-"))
    with pytest.raises(ArvidError, match="unknown sampling setting"):
        Sampling.build({"history_guidance": 3})


def test_each_setting_declares_its_default_off_value_and_help():
    for name in Sampling.settings():
        d = Sampling.describe(name)
        assert d["help"] and d["rule"] and getattr(Sampling(), name) == d["default"]
        if d["off"] is not None:  # the off value is a valid value that switches the setting off
            assert not Sampling(**{name: d["off"]}).is_on(name)
    # the filters and guidance are off unless asked for; temperature and steps always apply
    assert not any(Sampling().is_on(n) for n in ("top_k", "top_p", "min_p", "guidance"))
    assert Sampling().is_on("temperature") and Sampling().is_on("steps")


def test_sampling_file_is_read_with_its_checks(tmp_path):
    f = tmp_path / "sampling.json"
    f.write_text('{"top_k": 8, "min_p": null}')
    assert Sampling.read_file(f) == {"top_k": 8}
    for text, match in (('{"top_k": 2.5}', "whole number"), ('{"min_p": -1}', "min-p must be in"),
                        ('[1]', "JSON object"), ('{"history_guidance": 2}', "JSON object"), ("{", "cannot read")):
        f.write_text(text)
        with pytest.raises(ArvidError, match=match):
            Sampling.read_file(f)
