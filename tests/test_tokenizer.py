"""The tokenizer model: shapes, causality, streaming == whole clip, fp32 quantization, frame rule, files."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arvid.errors import ArvidError
from arvid.tokenizer import Tokenizer, TokenizerConfig, check_frames, fit_frames, pixel_frames
from arvid.tokenizer.causal_conv import StreamState


def tiny(**overrides) -> Tokenizer:
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny", **overrides)).eval()
    if tok.decoder.motion_out is not None:  # it starts at zero (no motion, an even blend): give it some
        torch.nn.init.normal_(tok.decoder.motion_out.conv.weight, std=1.0)
    if tok.context is not None:  # its projections start at zero (the plain tokenizer): make the frame count
        for out in [*tok.context.enc_out, *tok.context.dec_out]:
            torch.nn.init.normal_(out.conv.weight, std=0.3)
    return tok


def clip(tok: Tokenizer, k: int = 3, size: int = 16, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    frames = 1 + k * tok.temporal_factor
    return torch.rand(batch, tok.config.channels, frames, size, size, generator=g) * 2 - 1  # (B, C, T, H, W)


CONTEXTS = pytest.mark.parametrize("context", [{}, {"context": True}], ids=["plain", "context"])


def latents(tok: Tokenizer, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if tok.config.context:  # the encoder reads the decoder's output: latent frame by latent frame
            return tok.closed_loop(tok.fold(video), StreamState(), StreamState())[0]
        return tok.encoder(tok.fold(video))  # (B, D, t, h, w)


@pytest.mark.parametrize("tau", [1, 2, 4])
@pytest.mark.parametrize("spatial", [4, 8, 16])
def test_shapes_for_every_tau_and_spatial_factor(tau, spatial):
    tok = tiny(temporal_factor=tau, spatial_factor=spatial)
    video = clip(tok, k=2, size=2 * spatial)
    codes = tok.encode(video)
    assert codes.shape == (2, *tok.latent_shape(1 + 2 * tau, 2 * spatial, 2 * spatial)) == (2, 3, 2, 2)
    assert codes.dtype == torch.int64 and 0 <= int(codes.min()) and int(codes.max()) < tok.codebook_size
    out = tok.decode(codes)
    assert out.shape == video.shape and out.dtype == torch.float32
    assert float(out.abs().max()) <= 1.0
    recon, train_codes, aux = tok(video)  # the training pass has the same shapes, unclamped
    assert recon.shape == video.shape and torch.equal(train_codes, codes) and aux.ndim == 0


def test_images_are_one_frame_videos():
    tok = tiny()
    image = clip(tok, k=0)  # (B, C, 1, H, W)
    assert tok.encode(image).shape == (2, 1, 4, 4)
    assert tok.decode(tok.encode(image)).shape == image.shape
    # the first latent frame of a video is the image's code: it sees frame 0 only
    video = clip(tok, k=2)
    video[:, :, :1] = image
    assert torch.equal(tok.encode(video)[:, :1], tok.encode(image))


@CONTEXTS
@pytest.mark.parametrize("tau", [1, 2, 4])
def test_encoder_is_causal(tau, context):
    """Changing frame f never changes the latent frames before the one that holds f."""
    tok = tiny(temporal_factor=tau, **context)
    video = clip(tok, k=3, batch=1)
    base_z, base_codes = latents(tok, video), tok.encode(video)
    for f in sorted({0, 1, tau, tau + 1, video.shape[2] - 1}):  # first frame, group edges, last frame
        changed = video.clone()
        changed[:, :, f] = -changed[:, :, f]
        z, codes = latents(tok, changed), tok.encode(changed)
        first = 0 if f == 0 else 1 + (f - 1) // tau  # the latent frame that holds frame f
        torch.testing.assert_close(z[:, :, :first], base_z[:, :, :first], rtol=0, atol=1e-6)
        assert torch.equal(codes[:, :first], base_codes[:, :first])
        assert (z[:, :, first] - base_z[:, :, first]).abs().max() > 1e-3  # the change does reach its own frame


@CONTEXTS
@pytest.mark.parametrize("warp", [False, True])
def test_decoder_is_causal(warp, context):
    tok = tiny(temporal_factor=2, warp=warp, **context)
    codes = tok.encode(clip(tok, k=3, batch=1))
    base = tok.decode(codes)
    changed = codes.clone()
    changed[:, 2] = (changed[:, 2] + 7) % tok.codebook_size  # latent frame 2 holds frames 3 and 4
    out = tok.decode(changed)
    assert torch.equal(out[:, :, :3], base[:, :, :3])
    assert (out[:, :, 3:5] - base[:, :, 3:5]).abs().max() > 1e-3


@CONTEXTS
@pytest.mark.parametrize("warp", [False, True])
@pytest.mark.parametrize("tau", [1, 2, 4])
def test_streaming_equals_whole_clip(tau, warp, context):
    tok = tiny(temporal_factor=tau, warp=warp, **context)
    video = clip(tok, k=4)
    frames = video.shape[2]
    whole_z, whole_codes = latents(tok, video), tok.encode(video)

    enc = tok.encoder_stream(batch_size=2)
    bounds = [0, 1, 2, 2 + tau, frames]  # odd splits: 1 frame, 1 frame, τ frames, the rest
    parts = [enc.push_latents(video[:, :, a:b]) for a, b in zip(bounds, bounds[1:])]
    stream_z = torch.cat(parts, dim=2)
    assert stream_z.shape == whole_z.shape
    assert (stream_z - whole_z).abs().max() <= 1e-5

    enc = tok.encoder_stream(batch_size=2)
    codes = torch.cat([enc.push(video[:, :, i:i + 1]) for i in range(frames)], dim=1)  # one frame at a time
    assert torch.equal(codes, whole_codes)

    dec = tok.decoder_stream(batch_size=2)
    pieces = [dec.push(whole_codes[:, :1]), dec.push(whole_codes[:, 1:3]), dec.push(whole_codes[:, 3:])]
    assert [p.shape[2] for p in pieces] == [1, 2 * tau, (whole_codes.shape[1] - 3) * tau]
    assert (torch.cat(pieces, dim=2) - tok.decode(whole_codes)).abs().max() <= 1e-5


@CONTEXTS
def test_stream_state_is_bounded(context):
    """Streaming keeps only the causal convolutions' last k-1 frames (and, with context, the last frame shown):
    memory does not grow with length, for the decoder and for the encoder with its own copy of the decoder."""
    tok = tiny(temporal_factor=2, **context)
    video = clip(tok, k=8, batch=1)
    enc, dec = tok.encoder_stream(1), tok.decoder_stream(1)
    sizes = []
    for i in range(video.shape[2]):
        codes = enc.push(video[:, :, i:i + 1])
        dec.push(codes)
        sizes.append((dec.state.nbytes(), enc.state.nbytes() + enc.dec_state.nbytes()))
    assert sizes[1] == sizes[-1] and sizes[-1][0] > 0 and sizes[-1][1] > 0
    assert (enc.prev is not None) is bool(context)


def test_stream_rejects_wrong_input():
    tok = tiny()
    enc = tok.encoder_stream(batch_size=2)
    with pytest.raises(ArvidError, match="B=2"):
        enc.push(clip(tok, batch=1))
    enc.push(clip(tok, k=0, size=16))
    with pytest.raises(ArvidError, match="size changed"):
        enc.push(clip(tok, k=0, size=8))


def test_quantization_runs_in_float32_under_bf16_autocast():
    # levels of 6 give code values ±1/3, ±2/3, which bf16 cannot hold exactly
    tok = Tokenizer(TokenizerConfig.preset("tiny", levels=[6, 6, 5]))
    video = clip(tok)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = tok.encoder(tok.fold(video))
        zq, codes, _ = tok.quantizer(z)
        recon, _, _ = tok(video)
    assert z.dtype == torch.bfloat16  # autocast really is on for the convolutions
    assert zq.dtype == torch.float32
    assert torch.equal(zq, tok.quantizer.codes_to_latent(codes))  # exact float32 code values
    assert not torch.equal(zq.bfloat16().float(), zq)  # ...which bf16 would have rounded
    assert torch.equal(codes, tok.quantizer(z.float())[1])  # the same codes as outside autocast
    assert recon.shape == video.shape


@pytest.mark.parametrize("kind", ["lfq", "vq"])
def test_lfq_and_vq_quantize_in_float32_and_train(kind):
    tok = Tokenizer(TokenizerConfig.preset("tiny", quantizer=kind, num_codes=16)).train()
    video = clip(tok)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = tok.encoder(tok.fold(video))
        zq, codes, aux = tok.quantizer(z)
    assert zq.dtype == torch.float32 and codes.dtype == torch.int64 and int(codes.max()) < 16
    recon, codes, aux = tok(video)
    assert aux.item() != 0  # LFQ entropy loss / VQ commitment loss
    (recon.pow(2).mean() + aux).backward()
    assert tok.encoder.conv_in.conv.weight.grad.abs().sum() > 0


def test_vq_codebook_is_frozen_during_encode():
    tok = Tokenizer(TokenizerConfig.preset("tiny", quantizer="vq", num_codes=16)).train()
    video = clip(tok)
    tok(video)  # k-means init + one EMA step
    before = {k: v.clone() for k, v in tok.quantizer.state_dict().items()}
    other = clip(tok, seed=1)
    tok.encode(other)
    assert all(torch.equal(before[k], v) for k, v in tok.quantizer.state_dict().items())
    tok(other)  # (the same clip again would be a fixed point of the EMA right after k-means)
    assert not all(torch.equal(before[k], v) for k, v in tok.quantizer.state_dict().items())


def test_frame_count_rule():
    assert [check_frames(n, 4) for n in (1, 5, 9)] == [1, 2, 3]
    assert pixel_frames(3, 4) == 9
    with pytest.raises(ArvidError, match=r"10 frames.*τ=4.*nearest valid lengths are 9 or 13.*fit_frames"):
        check_frames(10, 4)
    with pytest.raises(ArvidError, match="nearest valid lengths are 1"):
        check_frames(0, 2)
    tok = tiny(temporal_factor=2)
    with pytest.raises(ArvidError, match="4 frames.*3 or 5"):
        tok.encode(torch.zeros(1, 1, 4, 16, 16))
    with pytest.raises(ArvidError, match="multiples of its spatial factor 4"):
        tok.latent_shape(5, 18, 16)
    with pytest.raises(ArvidError, match="channels"):
        tok.encode(torch.zeros(1, 3, 5, 16, 16))
    with pytest.raises(ArvidError, match=r"codes must lie in \[0, 25\)"):
        tok.decode(torch.full((1, 2, 4, 4), 25))


def test_fit_frames_trims_or_pads_explicitly():
    frames = np.arange(11, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)  # (T, H, W, C)
    trimmed = fit_frames(frames, 4, mode="trim")
    padded = fit_frames(frames, 4, mode="pad")
    assert trimmed.shape[0] == 9 and np.array_equal(trimmed, frames[:9])
    assert padded.shape[0] == 13 and np.array_equal(padded[:11], frames) and (padded[11:] == 10).all()
    video = torch.randn(1, 1, 11, 4, 4)  # (B, C, T, H, W)
    assert fit_frames(video, 4, mode="pad").shape[2] == 13
    assert fit_frames(video, 2) is video  # already fits
    with pytest.raises(ArvidError, match="unknown fit mode"):
        fit_frames(frames, 4, mode="stretch")


def test_config_presets_and_validation():
    for name in ("tiny", "mnist", "base"):
        cfg = TokenizerConfig.preset(name)
        assert TokenizerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    mnist = TokenizerConfig.preset("mnist")
    assert (mnist.temporal_factor, mnist.spatial_factor, mnist.codebook_size) == (2, 8, 240)
    assert mnist.fingerprint() != mnist.replace(levels=[8, 5, 5, 5]).fingerprint()
    assert mnist.fingerprint() == mnist.replace(notes={"dataset": "x"}).fingerprint()
    assert mnist.fingerprint() == mnist.replace(warp=True).fingerprint()  # decoder-only: codes mean the same
    # `context` came later: off, it leaves the fingerprint of every earlier tokenizer (the shipped one's) as it was
    assert mnist.fingerprint() == "5da894abafbf697d"
    coded = mnist.replace(context=True)
    assert coded.fingerprint() != mnist.fingerprint()
    # motion_search was a setting of earlier releases: a file that has it off still reads, with the same fingerprint
    assert TokenizerConfig.from_dict({**coded.to_dict(), "motion_search": 0}).fingerprint() == coded.fingerprint()
    assert coded.fingerprint() != coded.replace(warp=True).fingerprint()  # with context, the decoder decides the codes
    assert TokenizerConfig.from_dict(mnist.replace(warp=True).to_dict()).warp is True
    with pytest.raises(ArvidError, match="unknown tokenizer preset"):
        TokenizerConfig.preset("huge")
    bad = [({"widht": 8}, "unknown tokenizer setting"), ({"width": "8"}, "must be an integer"),
           ({"width": True}, "must be an integer"), ({"levels": [8, 5.5]}, "list of integers"),
           ({"temporal_factor": 3}, "temporal_factor must be one of"), ({"spatial_factor": 32}, "spatial_factor"),
           ({"levels": [2, 8]}, "FSQ levels"), ({"quantizer": "lfq", "num_codes": 1000}, "power of two"),
           ({"patch": 8, "spatial_factor": 4}, "patch"), ({"warp": 1}, "must be true or false"),
           ({"motion_search": 2}, "unknown tokenizer setting")]
    for change, message in bad:
        with pytest.raises(ArvidError, match=message):
            TokenizerConfig.from_dict({**TokenizerConfig.preset("tiny").to_dict(), **change}, source="x.json")


@pytest.mark.parametrize("kind", ["fsq", "lfq", "vq"])
def test_checkpoint_round_trip_gives_identical_codes(tmp_path, kind):
    tok = Tokenizer(TokenizerConfig.preset("tiny", quantizer=kind, num_codes=16))
    video = clip(tok)
    tok.train()(video)  # VQ: k-means init, so the codebook is not the initial one
    tok.eval()
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.config == tok.config and not loaded.training
    codes = tok.encode(video)
    assert torch.equal(loaded.encode(video), codes)
    assert torch.equal(loaded.decode(codes), tok.decode(codes))


def test_from_pretrained_rejects_bad_folders(tmp_path):
    tok = tiny()
    tok.save_pretrained(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    config["config"]["extra"] = 1
    (tmp_path / "tok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArvidError, match="unknown tokenizer setting.*extra"):
        Tokenizer.from_pretrained(tmp_path / "tok")
    del config["config"]["extra"]
    config["config"]["width"] = 16  # weights of another size
    (tmp_path / "tok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArvidError, match="does not match the model built from its config"):
        Tokenizer.from_pretrained(tmp_path / "tok")
    with pytest.raises(ArvidError, match="does not exist"):
        Tokenizer.from_pretrained(tmp_path / "nothing")


def test_uint8_conveniences():
    tok = tiny()
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 1), dtype=np.uint8)  # (T, H, W, C)
    codes = tok.encode_video(frames)
    assert codes.shape == (3, 4, 4) and codes.dtype == np.int64
    video = tok.decode_to_video(codes)
    assert video.shape == frames.shape and video.dtype == np.uint8


def test_causal_conv_chunks_match_whole():
    from arvid.tokenizer.causal_conv import CausalConv3d

    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, kernel_t=3)
    x = torch.randn(1, 3, 7, 5, 5)
    state = StreamState()
    chunks = torch.cat([conv(x[:, :, a:b], state) for a, b in ((0, 1), (1, 2), (2, 7))], dim=2)
    torch.testing.assert_close(chunks, conv(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["fsq", "lfq", "vq"])
def test_quantized_latent_equals_latent_rebuilt_from_codes(kind):
    tok = Tokenizer(TokenizerConfig.preset("tiny", quantizer=kind, num_codes=16))
    video = clip(tok)
    tok.train()(video)  # VQ: k-means init
    tok.eval()
    with torch.no_grad():
        zq, codes, _ = tok.quantizer(latents(tok, video), update=False)
    assert torch.equal(zq, tok.quantizer.codes_to_latent(codes))


def test_warp_moves_pixels_by_the_flow():
    from arvid.tokenizer.warp import warp

    frame = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)  # (B, C, H, W), distinct values
    flow = torch.zeros(1, 2, 5, 7)
    assert torch.allclose(warp(frame, flow), frame, atol=1e-5)  # no motion: the same frame
    flow[:, 0], flow[:, 1] = 1.0, 2.0  # each pixel reads the one 1 row down and 2 columns right
    out = warp(frame, flow)
    assert torch.allclose(out[..., :4, :5], frame[..., 1:, 2:], atol=1e-4)
    assert torch.allclose(out[..., -1, -1], frame[..., -1, -1])  # outside the frame: the border repeats
    flow[:] = 0.5  # half a pixel both ways: the mean of four neighbours
    want = (frame[..., :-1, :-1] + frame[..., 1:, :-1] + frame[..., :-1, 1:] + frame[..., 1:, 1:]) / 4
    assert torch.allclose(warp(frame, flow)[..., :-1, :-1], want, atol=1e-4)


def test_render_blends_the_direct_frame_with_the_previous_one():
    from arvid.tokenizer.warp import render

    g = torch.Generator().manual_seed(0)
    direct = torch.rand(2, 1, 4, 6, 6, generator=g)  # (B, C, T, H, W)
    motion = torch.zeros(2, 3, 4, 6, 6)
    motion[:, 2] = -30.0  # gate ~0: every frame after the first copies the one before (no motion)
    frames, last = render(direct, motion, None)
    for t in range(4):  # the first frame has nothing to reuse, so the whole clip is frame 0
        assert torch.allclose(frames[:, :, t], direct[:, :, 0], atol=1e-6)
    assert torch.equal(last, frames[:, :, -1])
    frames, _ = render(direct, motion, prev=torch.full((2, 1, 6, 6), 0.25))  # a clip that goes on: reuse prev
    assert torch.allclose(frames, torch.full_like(frames, 0.25), atol=1e-6)
    motion[:, 2] = 30.0  # gate ~1: the direct frames
    assert torch.allclose(render(direct, motion, torch.zeros(2, 1, 6, 6))[0], direct, atol=1e-6)
    motion[:, 2] = 0.0  # an even blend
    frames, _ = render(direct, motion, torch.zeros(2, 1, 6, 6))
    assert torch.allclose(frames[:, :, 0], direct[:, :, 0] / 2, atol=1e-6)
    assert torch.allclose(frames[:, :, 1], (direct[:, :, 1] + frames[:, :, 0]) / 2, atol=1e-6)


def test_warp_decoder_starts_as_an_even_blend_and_trains():
    tok = Tokenizer(TokenizerConfig.preset("tiny", warp=True))
    assert not tok.decoder.motion_out.conv.weight.any() and not tok.decoder.motion_out.conv.bias.any()
    video = clip(tok, k=2)
    recon, _, aux = tok.train()(video)
    (F.mse_loss(recon, video) + aux).backward()
    assert tok.decoder.motion_out.conv.weight.grad.abs().sum() > 0  # the flow and the gate learn


@pytest.mark.parametrize("tau", [1, 4])
def test_context_encoder_codes_against_what_the_decoder_shows(tau):
    """A context tokenizer's encoder runs the decoder as it goes: the frames it codes against are exactly the frames
    `decode` gives from its codes, and so its codes (after the first latent frame) depend on the decoder's weights."""
    tok = tiny(temporal_factor=tau, context=True)
    video = clip(tok, k=3)
    with torch.no_grad():
        _, codes, _, shown, _ = tok.closed_loop(tok.fold(video), StreamState(), StreamState())
    assert torch.equal(codes, tok.encode(video))
    assert (shown.clamp(-1, 1) - tok.decode(codes)).abs().max() <= 1e-5

    from arvid.tokenizer.codes import weights_fingerprint

    before = weights_fingerprint(tok)
    with torch.no_grad():
        tok.decoder.conv_out.conv.weight.mul_(-1.0)  # another decoder shows other frames
    changed = tok.encode(video)
    assert torch.equal(changed[:, :1], codes[:, :1])  # the first latent frame has no frame before it
    assert not torch.equal(changed[:, 1:], codes[:, 1:])
    assert weights_fingerprint(tok) != before  # code files know the decoder that encoded them


def test_context_tokenizer_trains_through_time_and_refuses_decoder_only_training():
    tok = tiny(temporal_factor=2, context=True).train()
    video = clip(tok, k=3).requires_grad_(True)
    recon, _, _ = tok(video)
    recon[:, :, -1].sum().backward()  # the last frame's error reaches the first frame: through time, not cut per step
    assert video.grad[:, :, 0].abs().max() > 0
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in tok.context.parameters())
    with pytest.raises(ArvidError, match="train it whole"):
        tok.freeze_encoder()


@pytest.mark.parametrize("tau", [1, 4])
def test_refined_codes_render_closer_with_the_same_bits_streamed_and_causal(tau):
    """Encoder-side search (`encode(refine=N)`): the decoder stays fixed, the codes move. The first latent frame is
    never rendered worse (the search keeps the best codes it tried, the encoder's own among them); on this clip every
    later frame comes closer too. Streaming and causality hold as without it, and no weight gets a gradient."""
    tok = tiny(temporal_factor=tau, context=True)  # the tiny preset's temporal kernel 3: the decoder state is copied
    video = clip(tok, k=3)
    plain, refined = tok.encode(video), tok.encode(video, refine=6)
    assert refined.shape == plain.shape and refined.dtype == plain.dtype and not torch.equal(refined, plain)

    def mse(codes, frames=slice(None)):  # per clip
        return (tok.decode(codes) - video)[:, :, frames].pow(2).flatten(1).mean(1)

    assert (mse(refined, slice(0, 1)) <= mse(plain, slice(0, 1)) + 1e-7).all()
    assert (mse(refined) < mse(plain)).all()
    assert all(p.grad is None for p in tok.parameters())

    enc = tok.encoder_stream(batch_size=2, refine=6)
    streamed = torch.cat([enc.push(video[:, :, i:i + 1]) for i in range(video.shape[2])], dim=1)
    assert torch.equal(streamed, refined)

    later = video.clone()
    later[:, :, -1] = -later[:, :, -1]  # change the last frame only
    assert torch.equal(tok.encode(later, refine=6)[:, :-1], refined[:, :-1])


def test_refine_is_refused_where_it_cannot_work():
    video = clip(tiny(), k=1)
    with pytest.raises(ArvidError, match="needs a tokenizer that codes with context"):
        tiny().encode(video, refine=2)  # a plain tokenizer's codes are its encoder's alone
    with pytest.raises(ArvidError, match="needs a tokenizer that codes with context"):
        tiny().encoder_stream(2, refine=2)
    for bad in (-1, 1.5, True):
        with pytest.raises(ArvidError, match="integer >= 0"):
            tiny(context=True).encode(video, refine=bad)
