"""The layered tokenizer (`arvid.tokenizer.layered`, `arvid.tokenizer.layers`) and what it changed around it.

A tiny layered tokenizer with random weights codes 32x32 grayscale clips: a 4x4 latent grid, 2 layers, so
τ = 4 frames per latent frame. Its clips here are two glyph-like blobs of ink moved along known paths and
combined by max, the way the tokenizer draws frames, so the motion code can be checked exactly whatever the
(random) reference coder draws: with `exact_reference=True` the layers are cut from the input's own pixels.
Where the choice of the reference matters, a stand-in reference coder that draws back exactly what it coded
(`faithful`) replaces the random one, which draws every picture flat gray.

Covered: the motion code is exact (frames and positions; 1 or 2 layers, square or not), the choice of the
reference and the search backwards from it, `render` and `search_frame`, streaming equals whole clips, the
frame-count rule with `first` (0 for layered, 1 unchanged), mending of codes of the wrong kind, model files and
their errors, the pipeline (`generate`, `extend`, a continuation starting from the input's exact frames), and
the layer splitter. Three xfail(strict) tests mark bugs found while writing these.
"""

import json
import re
import warnings

import numpy as np
import pytest
import torch

from arvid.errors import ArvidError, ArvidNotice
from arvid.generator import Generator, GeneratorConfig, Sampling, generate
from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import (LayeredConfig, LayeredTokenizer, Tokenizer, TokenizerConfig, check_frames, fit_frames,
                             load_tokenizer, longest_prefix, new_latent_frames, pixel_frames, tail_start,
                             tensor_to_video, video_to_tensor)
from arvid.tokenizer.layered import cut_layers, render, search_frame
from arvid.tokenizer.layers import InkRule, LayerNet, piece_slots, split_layers

H = W = 32  # frames; spatial factor 8 -> 4x4 latent tokens
TAU = 4  # 4·4 tokens / (2 layers x (y, x))
K = 2


def tiny_config(**changes) -> LayeredConfig:
    reference = TokenizerConfig.preset("tiny", spatial_factor=8, patch=2).to_dict()  # 25 codes, a few k weights
    return LayeredConfig(**{"reference": reference, "size": (H, W), "layers": K, "lookahead": TAU, **changes})


@pytest.fixture(scope="module")
def tok() -> LayeredTokenizer:
    torch.manual_seed(0)
    return LayeredTokenizer(tiny_config()).eval()


# ---------------------------------------------------------------------------------------- synthetic clips

def glyph(rows: list[str], seed: int) -> np.ndarray:
    """A uint8 patch: '#' is ink of random values in [60, 255] (well above InkRule.core), '.' background."""
    mask = np.array([[c == "#" for c in row] for row in rows])
    values = np.random.default_rng(seed).integers(60, 256, mask.shape)
    return np.where(mask, values, 0).astype(np.uint8)


BAR = glyph(["#######",
             "#######",
             "..###..",
             "..###..",
             "..###..",
             "..###..",
             "..###..",
             "..###.."], seed=1)  # a "T", 32 pixels of ink
RING = glyph([".######.",
              "########",
              "##....##",
              "##....##",
              "##....##",
              "########",
              ".######."], seed=2)  # an "O", 40 pixels of ink
GLYPHS = (BAR, RING)


def bounce(start: int, lo: int, hi: int, speeds) -> list[int]:
    """Positions from `start` moving by `speeds` in turn (first towards `hi`), bouncing off `lo` and `hi`."""
    p, d, out = start, 1, [start]
    for s in speeds:
        p += d * s
        if not lo <= p <= hi:
            p, d = (2 * hi - p if p > hi else 2 * lo - p), -d
        out.append(p)
    return out


def moving_clips(T: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Two clips of T frames, uint8 (2, T, H, W), and their glyphs' corners (2, T, 2 glyphs, 2): the T along the
    top and the O along the bottom, with changing speeds, bouncing (clip 0); both down the sides (clip 1). The
    glyphs keep at least 8 pixels apart."""
    fast = [(2, 3, 1, 2, 3, 2, 1)[t % 7] for t in range(T - 1)]
    slow = [t % 2 for t in range(T - 1)]

    def corners(ys, xs):
        return np.stack([ys, xs], 1)

    clip0 = [corners(bounce(1, 1, 3, slow), bounce(0, 0, 25, fast)),  # rows 1..10
             corners(bounce(25, 20, 25, slow), bounce(24, 0, 24, fast[::-1]))]  # rows 20..31
    clip1 = [corners(bounce(0, 0, 24, fast), bounce(2, 0, 4, slow)),  # columns 0..10
             corners(bounce(25, 0, 25, fast[::-1]), bounce(20, 20, 24, slow))]  # columns 20..31
    paths = np.stack([np.stack(clip0, 1), np.stack(clip1, 1)])  # (2, T, 2, 2)
    return np.stack([draw(paths[b]) for b in range(2)]), paths


def draw(corners: np.ndarray) -> np.ndarray:
    """uint8 frames (T, H, W): each glyph at its corners (T, 2 glyphs, 2), combined by max."""
    frames = np.zeros((len(corners), H, W), np.uint8)
    for t, frame in enumerate(frames):
        for g, (y, x) in zip(GLYPHS, corners[t]):
            region = frame[y:y + g.shape[0], x:x + g.shape[1]]
            assert region.shape == g.shape, "a glyph left the frame"
            np.maximum(region, g, out=region)
    return frames


def as_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W) -> float (B, 1, T, H, W) in [-1, 1]."""
    return video_to_tensor(frames[..., None], 1)


def positions(codes: torch.Tensor, R: int) -> np.ndarray:
    """The positions a layered tokenizer's codes (B, t, h, w) hold: (B, (t - 1)·τ, K, 2)."""
    B = codes.shape[0]
    return (codes[:, 1:].reshape(B, -1, K, 2) - R).numpy()


# ------------------------------------------------------------------------------------- the motion code

def test_config_sizes(tok):
    cfg = tok.config
    assert cfg.latent == (4, 4) and cfg.frames_per_latent == tok.temporal_factor == TAU
    assert cfg.reference_codes == 25 and cfg.positions == 32
    assert tok.codebook_size == 25 + 32 + 1 and tok.first_frames == 0 and Tokenizer.first_frames == 1
    with pytest.raises(ArvidError, match="lookahead must be in"):
        tiny_config(lookahead=TAU + 1)
    with pytest.raises(ArvidError, match="choose layers dividing 8"):
        tiny_config(layers=3)
    with pytest.raises(ArvidError, match="one-channel"):
        tiny_config(reference=TokenizerConfig.preset("tiny", spatial_factor=8, channels=3).to_dict())


def test_moving_glyphs_are_coded_and_drawn_exactly(tok):
    frames, corners = moving_clips(12)
    video = as_video(frames)
    enc = tok.encoder_stream(2, exact_reference=True)
    codes = enc.push(video)
    assert codes.shape == (2, 1 + 12 // TAU, 4, 4) and codes.dtype == torch.int64
    R = tok.config.reference_codes
    assert int(codes[:, 0].max()) < R and int(codes[:, 1:].min()) >= R  # reference codes, then positions
    # the reference is one of the first `lookahead` frames, exactly as given
    ref = enc.reference.numpy()
    assert ref.shape == (2, H, W)
    assert all(any(np.array_equal(ref[b], f) for f in frames[b, :TAU]) for b in range(2))

    got = positions(codes, R)  # (2, 12, K, 2)
    for b in range(2):  # the tops-left of the two glyphs' ink, in either layer order
        assert (np.array_equal(got[b], corners[b]) or np.array_equal(got[b], corners[b][:, ::-1])), \
            f"clip {b}: positions {got[b].tolist()} are not the paths {corners[b].tolist()}"

    out = tok.decode(codes, reference=enc.reference)
    assert out.shape == video.shape and out.dtype == torch.float32
    assert float((out - video).abs().max()) <= 1 / 127.5
    assert np.array_equal(tensor_to_video(out)[..., 0], frames)  # every frame, to the 8-bit level


@pytest.fixture
def faithful(tok, monkeypatch) -> LayeredTokenizer:
    """`tok` with a reference coder that draws back exactly what it coded (every code of a picture is its number
    among the pictures seen), so the reference is chosen by the input's own ink: the random one draws every
    picture flat gray."""
    store: list[torch.Tensor] = []

    def number(picture: torch.Tensor) -> int:
        found = [i for i, seen in enumerate(store) if torch.equal(seen, picture)]
        if not found:
            store.append(picture)
        return found[0] if found else len(store) - 1

    def codes(frames):  # (N, H, W) -> (N, h, w)
        return torch.tensor([number(f.round().float()) for f in frames])[:, None, None].expand(-1, 4, 4).clone()

    monkeypatch.setattr(tok, "reference_codes", codes)
    monkeypatch.setattr(tok, "reference_pixels", lambda codes: torch.stack([store[int(c[0, 0])] for c in codes]))
    return tok


def test_the_clearest_early_frame_is_the_reference(faithful):
    """The glyphs of clip 0 start on top of each other (frame 0) and touching (frame 1), then part: frame 2 is
    the first whose ink is in two pieces, so it is the reference and frames 1 and 0 are searched backwards from
    it. Clip 1's glyphs are apart from frame 0, its reference."""
    tok = faithful
    bar = np.stack([np.full(12, 10), [9, 9, 8, 6, 5, 3, 2, 1, 0, 0, 0, 0]], 1)
    ring = np.stack([np.full(12, 10), [15, 16, 17, 19, 20, 22, 23, 24, 24, 24, 24, 24]], 1)
    frames, corners = moving_clips(12)
    corners[0] = np.stack([bar, ring], 1)
    frames[0] = draw(corners[0])
    for exact in (True, False):  # the same: the reference coder draws the picture back exactly
        enc = tok.encoder_stream(2, exact_reference=exact)
        codes = enc.push(as_video(frames))
        assert torch.equal(enc.reference, torch.from_numpy(frames[[0, 1], [2, 0]]).float())
        got = positions(codes, tok.config.reference_codes)
        for b in range(2):
            assert np.array_equal(got[b], corners[b]) or np.array_equal(got[b], corners[b][:, ::-1]), b
        assert np.array_equal(tensor_to_video(tok.decode(codes))[..., 0], frames)
    assert np.array_equal(tok.decode_to_video(tok.encode_video(frames[0, ..., None]))[..., 0], frames[0])


def test_render_moves_layers_and_search_finds_them():
    frames, corners = moving_clips(6)
    rule = InkRule()
    layers = cut_layers(frames[:, 0].astype(np.float32), K, None, rule)  # two pieces: no LayerNet needed
    assert layers.live.all() and layers.crops.shape[:2] == (2, K)
    order = [0 if tuple(layers.box[b, 0].tolist()) == tuple(corners[b, 0, 0]) else 1 for b in range(2)]
    pos = torch.from_numpy(np.stack([corners[b][:, [o, 1 - o]] for b, o in enumerate(order)]))  # (B, T, K, 2)
    assert torch.equal(render(layers, pos, H, W), torch.from_numpy(frames).float())
    edge = (torch.tensor([H, W]) - layers.size)[:, None]  # (B, 1, K, 2): each box in the bottom-right corner
    assert torch.equal(render(layers, torch.full((2, 1, K, 2), 100), H, W), render(layers, edge, H, W))
    for t in (1, 5):  # from a guess a few pixels off, the exact corners
        guess = pos[:, t] + torch.tensor([3, -2])
        assert torch.equal(search_frame(layers, torch.from_numpy(frames[:, t]).float(), guess, 6, 2), pos[:, t])
    lone = np.where(np.arange(W) < 16, frames[:1, 0], 0).astype(np.float32)  # the T alone: one layer, one absent
    one = cut_layers(lone, K, None, rule)
    assert one.live.tolist() == [[True, False]]
    found = search_frame(one, torch.from_numpy(lone), torch.zeros(1, K, 2, dtype=torch.long), 6, 2)
    assert found[0, 1].tolist() == [H, H] and found[0, 0].tolist() == one.box[0, 0].tolist()


@pytest.mark.parametrize("changes", [{"layers": 1, "lookahead": 8}, {"size": (32, 64), "lookahead": 8}],
                         ids=["one-layer", "32x64"])
def test_other_shapes_are_exact_too(changes):
    torch.manual_seed(0)
    tok = LayeredTokenizer(tiny_config(**changes)).eval()
    tau, (Hf, Wf) = tok.temporal_factor, tok.config.size
    assert tau == 8 and (tok.layer_net is None) == (tok.config.layers == 1)
    frames = np.zeros((2 * tau, Hf, Wf), np.uint8)
    for t, frame in enumerate(frames):  # the T moving right and down; in 32x64 the O moving left along the bottom
        frame[2 + t // 2:10 + t // 2, t + t // 2:t + t // 2 + 7] = BAR
        if Wf == 64:
            frame[22:29, 50 - 3 * t:58 - 3 * t] = RING
    enc = tok.encoder_stream(1, exact_reference=True)
    codes = enc.push(as_video(frames[None]))
    assert codes.shape == (1, 3, *tok.config.latent)
    assert np.array_equal(tensor_to_video(tok.decode(codes, reference=enc.reference))[0, ..., 0], frames)


def test_one_frame_per_latent_frame():
    tok = LayeredTokenizer(tiny_config(size=(16, 16), lookahead=1)).eval()  # 2x2 tokens / (2 layers x 2): τ = 1
    assert tok.temporal_factor == 1
    frames = np.zeros((3, 16, 16), np.uint8)
    for t, frame in enumerate(frames):
        frame[1:9, t:t + 7] = BAR
    assert tok.encode(as_video(frames[None])).shape == (1, 4, 2, 2)


def test_a_coded_reference_is_split_and_searched_the_same_way(tok):
    """Without `exact_reference` the layers are cut from the reference as its codes decode: with random weights
    a flat gray picture, one piece, which the LayerNet splits. (A narrow search keeps its full-frame layers
    quick.)"""
    narrow = LayeredTokenizer(tiny_config(search_radius=1)).eval()
    narrow.load_state_dict(tok.state_dict())
    video = as_video(moving_clips(8)[0])
    coded, exact = narrow.encode(video), narrow.encode(video, exact_reference=True)
    assert torch.equal(coded[:, 0], exact[:, 0])  # the same reference codes either way
    enc = narrow.encoder_stream(2)
    assert torch.equal(torch.cat([enc.push(video[:, :, :3]), enc.push(video[:, :, 3:])], 1), coded)
    assert torch.equal(enc.reference, narrow.reference_pixels(coded[:, 0]))
    assert narrow.decode(coded).shape == video.shape  # decodes from its own codes, no reference needed


@pytest.mark.parametrize("chunks", [(1, 3, 5, 3), (5, 3, 4), (1,) * 12], ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "coded"])
def test_streaming_encoder_equals_whole_clip(faithful, chunks, exact):
    tok = faithful
    video = as_video(moving_clips(12)[0])
    whole = tok.encode(video, exact_reference=exact)
    enc = tok.encoder_stream(2, exact_reference=exact)
    parts, seen = [], 0
    for n in chunks:
        parts.append(enc.push(video[:, :, seen:seen + n]))
        # the reference and the first τ frames' positions come with the τ-th frame, then one per τ frames
        assert parts[-1].shape[1] == _latent_done(seen + n) - _latent_done(seen)
        seen += n
    assert torch.equal(torch.cat(parts, 1), whole)


def _latent_done(frames: int) -> int:
    return 0 if frames < TAU else 1 + frames // TAU


def test_streaming_decoder_equals_whole_clip(tok):
    frames, _ = moving_clips(12)
    enc = tok.encoder_stream(2, exact_reference=True)
    codes = enc.push(as_video(frames))
    for reference in (None, enc.reference):
        whole = tok.decode(codes, reference=reference)
        dec = tok.decoder_stream(2, reference=reference)
        parts = [dec.push(codes[:, i:i + 1]) for i in range(codes.shape[1])]
        assert [p.shape[2] for p in parts] == [0, TAU, TAU, TAU]  # the reference makes no frame
        assert torch.equal(torch.cat(parts, 2), whole)
        assert dec.mended == 0


# ------------------------------------------------------------------------------------------ frame rules

def test_layered_clips_have_k_tau_frames(tok):
    assert tok.latent_shape(8, H, W) == (3, 4, 4)
    for T in (6, 0, 3):
        with pytest.raises(ArvidError, match=r"k·4 frames \(4, 8, 12, \.\.\.\)") as e:
            tok.latent_shape(T, H, W)
        assert ("4 or 8" if T == 6 else "nearest valid lengths are 4;") in str(e.value)
    with pytest.raises(ArvidError, match="resize the video to 32x32"):
        tok.latent_shape(4, 16, 16)
    with pytest.raises(ArvidError, match="6 frames"):
        tok.encode(torch.zeros(1, 1, 6, H, W))


def test_frame_rule_with_first_frames():
    assert [check_frames(n, 4, first=0) for n in (4, 8, 12)] == [2, 3, 4]
    with pytest.raises(ArvidError, match="nearest valid lengths are 8 or 12"):
        check_frames(10, 4, first=0)
    assert [pixel_frames(t, 4, first=0) for t in (1, 2, 3)] == [0, 4, 8]
    # a new layered clip: the reference, then ceil(N / τ) latent frames; after a context ceil(N / τ)
    assert [new_latent_frames(n, 4, after_context=False, first=0) for n in (1, 4, 5, 9)] == [2, 2, 3, 4]
    assert [new_latent_frames(n, 4, after_context=True, first=0) for n in (1, 4, 5)] == [1, 1, 2]
    assert [tail_start(n, 4, first=0) for n in (3, 4, 10, 12)] == [3, 0, 2, 0]  # 3 < τ: an empty tail
    assert [longest_prefix(n, 4, first=0) for n in (3, 4, 10)] == [0, 4, 8]
    # first=1 (conv tokenizers) as before
    assert [check_frames(n, 4) for n in (1, 5, 9)] == [1, 2, 3]
    assert [pixel_frames(t, 4) for t in (1, 3)] == [1, 9]
    assert [new_latent_frames(n, 4, after_context=False) for n in (1, 5, 6)] == [1, 2, 3]
    assert [tail_start(n, 4) for n in (1, 5, 10)] == [0, 0, 1]
    assert [longest_prefix(n, 4) for n in (1, 10)] == [1, 9]
    with pytest.raises(ValueError, match="0 or 1"):
        pixel_frames(2, 4, first=2)


def test_fit_frames_with_first_frames():
    frames = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)  # (T, H, W, C)
    assert np.array_equal(fit_frames(frames, 4, "trim", first=0), frames[:8])
    padded = fit_frames(frames, 4, "pad", first=0)
    assert padded.shape[0] == 12 and np.array_equal(padded[:10], frames) and (padded[10:] == 9).all()
    short = fit_frames(frames[:3], 4, "trim", first=0)  # shorter than τ: padded even when trimming
    assert short.shape[0] == 4 and (short[3] == 2).all()
    eight = frames[:8]
    assert fit_frames(eight, 4, first=0) is eight  # already fits
    video = torch.zeros(1, 1, 9, 2, 2)
    assert fit_frames(video, 4, first=0).shape[2] == 8 and fit_frames(video, 4) is video  # 9 = 1 + 2·4
    assert fit_frames(frames, 4, "trim").shape[0] == 9  # first=1 unchanged


# -------------------------------------------------------------------------------------------------- mending

def test_codes_of_the_wrong_kind_are_mended(tok):
    frames, _ = moving_clips(8)
    enc = tok.encoder_stream(2, exact_reference=True)
    codes = enc.push(as_video(frames))
    cfg = tok.config
    R, P = cfg.reference_codes, cfg.positions
    bad = codes.clone()
    bad[0, 0, 1, 2] = R + 5  # a position code where a reference code belongs
    pos = bad[:, 1:].view(2, -1, K, 2)  # (B, T, K, 2), a view of `bad`
    pos[0, 3, 0, 0] = 7  # a reference code for layer 0's y in frame 3
    pos[1, 5, 1, 1] = R + P  # "absent" for a present layer
    pos[1, 6, 1, 0] = R + P  # ... and again the next frame: still held
    dec = tok.decoder_stream(2, reference=enc.reference)
    out = dec.push(bad)
    assert dec.mended == 4

    expected = torch.from_numpy(positions(codes, R).copy())
    expected[0, 3, 0] = expected[0, 2, 0]  # each held where the layer was the frame before
    expected[1, 5, 1] = expected[1, 4, 1]
    expected[1, 6, 1] = expected[1, 4, 1]
    drawn = render(tok.layers_of(enc.reference), expected, H, W)
    assert torch.equal(out, (drawn.round() / 127.5 - 1)[:, None])

    # without a given picture the stray position code is drawn as reference code 0
    zero = bad.clone()
    zero[0, 0, 1, 2] = 0
    plain = tok.decoder_stream(2)
    assert torch.equal(plain.push(bad), tok.decode(zero)) and plain.mended == 4


def test_random_codes_decode_without_error(tok):
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, tok.codebook_size, (3, 3, 4, 4), generator=g)
    dec = tok.decoder_stream(3)
    out = dec.push(codes)
    assert out.shape == (3, 1, 2 * TAU, H, W) and float(out.abs().max()) <= 1 and dec.mended > 0
    with pytest.raises(ArvidError, match=r"codes must lie in \[0, 58\)"):
        tok.decode(torch.full((1, 2, 4, 4), 58))
    with pytest.raises(ArvidError, match=r"reference pictures must be \(B=1, 32, 32\)"):
        tok.decoder_stream(1, reference=torch.zeros(2, H, W))


# ---------------------------------------------------------------------------------------------------- files

def test_save_and_load(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, LayeredTokenizer) and back.config == tok.config
    mine, theirs = tok.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, tok.codebook_size, (2, 3, 4, 4), generator=g)
    assert torch.equal(back.decode(codes), tok.decode(codes))
    with pytest.raises(ArvidError, match="load_tokenizer"):
        Tokenizer.from_pretrained(tmp_path / "tok")
    conv = Tokenizer(TokenizerConfig.preset("tiny"))
    conv.save_pretrained(tmp_path / "conv")
    assert type(load_tokenizer(tmp_path / "conv")) is Tokenizer  # a conv tokenizer folder loads as before


@pytest.mark.parametrize("change, message", [
    ({"colour": True}, "unknown layered tokenizer setting"),
    ({"size": [32]}, "malformed layered tokenizer settings"),
    ({"size": "32x32"}, "malformed layered tokenizer settings"),
    ({"size": [20, 32]}, "multiple of the reference coder's spatial factor 8"),
    ({"layers": 1.5}, "malformed layered tokenizer settings"),
    ({"ink": {"ink": 3}}, "malformed layered tokenizer settings"),
], ids=["unknown-key", "short-size", "string-size", "size-not-coded", "fractional-layers", "bad-ink"])
def test_a_bad_config_is_a_one_line_error(tok, tmp_path, change, message):
    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    data["config"].update(change)
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ArvidError, match=message) as e:
        load_tokenizer(folder)
    assert "\n" not in str(e.value) and "config.json" in str(e.value)


@pytest.mark.parametrize("change", [
    {"size": [32.5, 32]},
    {"ink": {"core": "40"}},
    {"notes": "x"},
    {"reference": []},
], ids=["fractional-size", "string-ink", "notes-not-an-object", "empty-reference"])
def test_a_config_value_of_the_wrong_type_is_refused_at_load(tok, tmp_path, change):
    folder = tmp_path / "tok"
    tok.save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    data["config"].update(change)
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ArvidError, match="malformed layered tokenizer settings"):
        load_tokenizer(folder)


# ------------------------------------------------------------------------------------------------- pipeline

@pytest.fixture(scope="module")
def model(tok) -> Arvid:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4))
    return Arvid(tok, gen, "cpu")


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):
        yield


@pytest.mark.parametrize("n", [1, 4, 5, 9])
def test_generate_gives_exactly_n_frames(model, n):
    clip = model.generate(n, seed=1)
    assert clip.shape == (1, n, H, W, 1) and clip.dtype == np.uint8


@pytest.mark.parametrize("given, note", [(3, None), (4, None), (10, None),
                                         (18, "first 4 input frames .* at most the input's last 14")])
def test_extend_keeps_the_input_and_adds_exactly_n(model, given, note):
    frames = moving_clips(18)[0][0, :given, :, :, None]  # (T, H, W, 1)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        out = model.extend(frames, 5, seed=0)
        batch = model.extend(frames, 3, seed=0, batch=2)  # two continuations of one clip
    assert out.shape == (1, given + 5, H, W, 1)
    assert np.array_equal(out[0, :given], frames)
    assert batch.shape == (2, given + 3, H, W, 1) and (batch[:, :given] == frames).all()
    notes = [str(w.message) for w in said if w.category is ArvidNotice]
    assert len(notes) == (2 if note else 0) and all(re.search(note, m) for m in notes)


@pytest.mark.parametrize("given, whole, part", [(3, [], [0, 1, 2]), (4, [0, 1, 2, 3], []),
                                                (10, list(range(8)), [8, 9]),
                                                (18, list(range(4, 16)), [16, 17])])
def test_extend_continues_from_the_inputs_exact_frames(model, given, whole, part):
    """The context a continuation starts from decodes, with the prepared reference, to the input's own frames:
    its last W·τ + r frames at most (W = 3 here, r = T mod τ), the last r as the first positions of the next
    latent frame, which the generator completes; nothing is made up in front of a short input."""
    frames = moving_clips(18)[0][0, :given, :, :, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArvidNotice)
        prepared = model.prepare(frames)
    assert prepared.context.shape == (1, 1 + len(whole) // TAU, 4, 4)
    assert prepared.reference.shape == (1, H, W)
    assert prepared.partial_frames == len(part)
    if not part:
        assert prepared.partial is None
        decoded = model.tokenizer.decode(prepared.context, reference=prepared.reference)
        assert np.array_equal(tensor_to_video(decoded)[0], frames[whole])
        return
    per = model.tokenizer.config.layers * 2  # tokens per frame
    assert prepared.partial.shape == (1, len(part) * per)
    last = prepared.partial[:, -per:]  # the next latent frame completed with the last frame held still
    nxt = torch.cat([prepared.partial] + [last] * (TAU - len(part)), 1).view(1, 1, 4, 4)
    decoded = tensor_to_video(model.tokenizer.decode(torch.cat([prepared.context, nxt], 1),
                                                     reference=prepared.reference))[0]
    assert np.array_equal(decoded[:len(whole) + len(part)], frames[whole + part])


def test_extend_after_a_partial_latent_frame_shows_only_new_frames(model):
    """With 2 of a latent frame's 4 frames given, the first new frame is the latent frame's third: the stream
    yields the generated frames only, and as many as asked."""
    frames = moving_clips(18)[0][0, :6, :, :, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ArvidNotice)
        prepared = model.prepare(frames)
        new = list(model.stream(3, prepared, seed=0))
        codes = next(model.latents(1, prepared, seed=0))  # (1, h, w): the completed latent frame
    assert len(new) == 3
    assert torch.equal(codes.reshape(1, -1)[:, :prepared.partial.shape[1]], prepared.partial)
    dec = model.tokenizer.decoder_stream(1, reference=prepared.reference)
    dec.push(prepared.context)
    whole = tensor_to_video(dec.push(codes[:, None]))[0]  # (τ, H, W, 1)
    assert np.array_equal(np.stack([f[0] for f in new])[:TAU - 2], whole[2:])


# ------------------------------------------------------------------------------------------------ the layers

def test_layer_net_gives_one_logit_per_slot():
    torch.manual_seed(0)
    assert LayerNet(K)(torch.rand(1, 1, H, W)).shape == (1, K + 1, H, W)
    assert LayerNet(3, widths=(8, 8, 8, 8))(torch.rand(2, 1, 16, 24)).shape == (2, 4, 16, 24)


def test_split_layers_keeps_each_blob_whole():
    rule = InkRule()
    ref = np.zeros((H, W), np.float32)
    ref[3:3 + BAR.shape[0], 2:2 + BAR.shape[1]] = BAR
    ref[18:18 + RING.shape[0], 20:20 + RING.shape[1]] = RING
    ref[2, 2:9] = 30  # a soft edge above the T: above `low`, below `core`
    ref[30, 0] = 10  # faint dust, at or below `low`: background
    ref[14, 4] = 200  # a stray dot below the T: joins the nearer glyph
    slot = split_layers(ref, K, LayerNet(K), rule)  # separate pieces: the (random) net is not asked
    assert slot.shape == (H, W) and slot.dtype == np.int64
    assert np.array_equal(slot > 0, ref > rule.low)  # exactly the ink above `low`, nothing else
    ring, bar = slot[18:25, 20:28], slot[2:11, 2:9]  # the larger piece first
    assert set(np.unique(ring[RING > 0])) == {1} and set(np.unique(bar[ref[2:11, 2:9] > rule.low])) == {2}
    assert slot[14, 4] == 2 and slot[30, 0] == 0
    assert piece_slots(np.where(slot == 1, ref, 0), K, rule) is None  # one piece alone is not split by pieces


def test_well_drawn_wants_k_whole_objects_no_specks_and_no_blot():
    from arvid.tokenizer.layers import count_pieces, well_drawn

    rule = InkRule()
    two = np.zeros((64, 64), np.float32)
    two[5:20, 5:10] = 200
    two[30:50, 30:36] = 255
    assert well_drawn(two, 2, rule) and not well_drawn(two, 3, rule)
    broken = two.copy()
    broken[12, 5:10] = 100  # ink still joined above `core`, the stroke cut below `stroke`
    assert not well_drawn(broken, 2, rule)
    speck = two.copy()
    speck[60:65, 60:65] = 255  # a third piece of stroke, 16 px
    assert not well_drawn(speck, 2, rule)
    blot = two.copy()
    blot[30:60, 30:60] = 255  # the second object 900 px of solid stroke: over a tenth of the frame
    assert count_pieces(blot, rule) == 2 and not well_drawn(blot, 2, rule)


# ------------------------------------------------------------------------------------------- the label reader

class ScriptedReader(torch.nn.Module):
    """A label reader whose scores are given in advance, one list per round of candidates."""

    def __init__(self, rounds: list[list[float]], **config):
        super().__init__()
        from arvid.reader import ReaderConfig

        self.config = ReaderConfig(size=(H, W), **config)
        self.rounds, self.calls = [torch.tensor(r) for r in rounds], 0

    def label_scores(self, pictures, labels):
        assert pictures.dtype == np.uint8 and pictures.shape[1:] == (H, W) and len(labels) == len(pictures)
        out = self.rounds[min(self.calls, len(self.rounds) - 1)]
        self.calls += 1
        return out


@pytest.fixture
def conditional(tok, monkeypatch) -> tuple[Generator, Sampling]:
    """A labelled tiny generator whose every candidate counts as drawn whole, and 3 candidates a clip."""
    import arvid.tokenizer.layers as layers

    monkeypatch.setattr(layers, "well_drawn", lambda *a: True)
    torch.manual_seed(1)
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4,
                                              num_classes=10, labels_per_clip=2))
    return gen, Sampling(reference_candidates=3)


def candidates(gen, s: Sampling, labels: list, seed: int) -> torch.Tensor:
    """The candidates draw_reference draws in a round: (clips, n, h, w)."""
    from dataclasses import replace as _replace

    drawn = _replace(s, temperature=s.reference_temperature, reference_candidates=1)
    rows = torch.tensor(labels).repeat_interleave(s.reference_candidates, 0)
    out = next(iter(generate(gen, 1, drawn, batch=len(rows), labels=rows, seed=seed)))
    return out.view(len(labels), s.reference_candidates, 4, 4)


def test_the_reader_picks_the_candidate_that_shows_the_labels_best(tok, conditional):
    gen, s = conditional
    labels = [[3, 7], [1, 2]]
    cand = candidates(gen, s, labels, seed=5)
    plain = Arvid(tok, gen, "cpu").draw_reference(s, labels, 2, seed=5)
    assert torch.equal(plain, cand[:, 0])  # no reader: the first drawn whole
    reader = ScriptedReader([[0.2, 0.9, 0.6, 0.7, 0.1, 0.8]])
    picked = Arvid(tok, gen, "cpu", reader=reader).draw_reference(s, labels, 2, seed=5)
    assert torch.equal(picked[0], cand[0, 1]) and torch.equal(picked[1], cand[1, 2])
    assert reader.calls == 1  # both read clearly (above 0.5): no second round


def test_a_clip_the_reader_cannot_read_draws_more_rounds_and_keeps_its_best(tok, conditional):
    gen, s = conditional
    labels = [[3, 7], [1, 2]]
    reader = ScriptedReader([[0.1, 0.2, 0.3, 0.9, 0.1, 0.1],  # round 0: clip 1 read (0.9), clip 0 not (0.3 best)
                             [0.4, 0.1, 0.2],  # round 1: clip 0 alone, better (0.4)
                             [0.1, 0.1, 0.1]])  # rounds 2, 3: no better
    picked = Arvid(tok, gen, "cpu", reader=reader).draw_reference(s, labels, 2, seed=5)
    assert reader.calls == 4
    assert torch.equal(picked[1], candidates(gen, s, labels, seed=5)[1, 0])
    assert torch.equal(picked[0], candidates(gen, s, [[3, 7]], seed=6)[0, 0])  # round 1's first, seed + 1


def test_a_reader_that_does_not_read_the_models_pictures_or_labels_is_refused(tok, conditional):
    gen, _ = conditional
    with pytest.raises(ArvidError, match="reads 32x32 pictures of 3 channel"):
        Arvid(tok, gen, "cpu", reader=ScriptedReader([[1.0]], channels=3))
    with pytest.raises(ArvidError, match="reads 5 classes; the generator is conditioned on 10"):
        Arvid(tok, gen, "cpu", reader=ScriptedReader([[1.0]], num_classes=5))
    with pytest.raises(ArvidError, match="takes no labels"):
        Arvid(tok, Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4)),
              "cpu", reader=ScriptedReader([[1.0]]))


def test_a_model_folder_keeps_its_reader(tok, conditional, tmp_path):
    from arvid.reader import LabelReader, ReaderConfig

    gen, _ = conditional
    torch.manual_seed(0)
    reader = LabelReader(ReaderConfig(size=(H, W), width=4))
    Arvid(tok, gen, "cpu", reader=reader).save_pretrained(tmp_path / "m")
    back = Arvid.from_pretrained(tmp_path / "m")
    assert isinstance(back.reader, LabelReader)
    assert all(torch.equal(a, b) for a, b in zip(reader.state_dict().values(), back.reader.state_dict().values()))
    Arvid(tok, gen, "cpu").save_pretrained(tmp_path / "m")  # another model into the same folder: its reader goes
    assert not (tmp_path / "m" / "reader").exists() and Arvid.from_pretrained(tmp_path / "m").reader is None
