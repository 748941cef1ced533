"""The generation pipeline through the API and the CLI, on tiny untrained models.

Untrained weights make noise, but every property here is structural: frame counts, resolution,
determinism, the input kept first, streaming equal to the batch call, clean errors.
"""

import inspect
import pydoc
import warnings

import numpy as np
import pytest
import torch

from arvid import ArvidError, ArvidNotice
from arvid.cli.main import main
from arvid.generator import Generator, GeneratorConfig, Sampling
from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import Tokenizer, TokenizerConfig

H = W = 16  # tiny tokenizer: spatial factor 4 -> 4x4 latent tokens, τ = 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny"))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=H // 4, latent_w=W // 4,
                                              num_classes=10, labels_per_clip=2))
    root = tmp_path_factory.mktemp("model")
    Arvid(tok, gen, "cpu").save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def model(model_dir):
    return Arvid.from_pretrained(model_dir, device="cpu")


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):
        yield


@pytest.mark.parametrize("frames", [1, 2, 5, 8])
def test_generate_gives_exactly_the_frames_asked_for(model, frames):
    clip = model.generate(frames, seed=1, batch=2)
    assert clip.shape == (2, frames, H, W, 1) and clip.dtype == np.uint8


def test_same_seed_same_clip_other_seed_other_clip(model):
    a = model.generate(5, seed=3, top_k=8)
    assert np.array_equal(a, model.generate(5, seed=3, top_k=8))
    assert not np.array_equal(a, model.generate(5, seed=4, top_k=8))


def test_a_paused_stream_leaves_inference_mode_off(model):
    it = model.stream(3)
    next(it)
    assert not torch.is_inference_mode_enabled()


def test_stream_yields_the_same_frames_as_the_batch_call(model):
    streamed = list(model.stream(7, seed=2, labels=[3, 7], guidance=2.0))
    assert len(streamed) == 7
    assert np.array_equal(np.stack(streamed, axis=1), model.generate(7, seed=2, labels=[3, 7], guidance=2.0))


@pytest.mark.parametrize("input_frames", [1, 4, 9])
def test_extend_keeps_the_input_first_and_adds_exactly_n(model, input_frames):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(input_frames, H, W, 1), dtype=np.uint8)
    out = model.extend(video, 3, seed=0)
    assert out.shape == (1, input_frames + 3, H, W, 1)
    assert np.array_equal(out[0, :input_frames], video)  # the input frames themselves, unchanged


def test_extend_fits_other_sizes_and_colour_and_says_so(model):
    video = np.zeros((3, 40, 24, 3), dtype=np.uint8)
    prepared = model.prepare(video)
    assert prepared.frames.shape == (1, 3, H, W, 1)
    notes = " ".join(prepared.notes)
    assert "24x40 to 16x16" in notes and "grayscale" in notes
    with pytest.warns(ArvidNotice, match="24x40 to 16x16"):
        assert model.extend(video, 2).shape == (1, 5, H, W, 1)


def test_extend_of_a_colour_640x480_clip_warns_about_resizing_and_gray(model):
    video = np.zeros((3, 480, 640, 3), dtype=np.uint8)
    with pytest.warns(ArvidNotice) as said:
        out = model.extend(video, 2, seed=0)
    assert out.shape == (1, 5, H, W, 1)
    messages = [str(w.message) for w in said if w.category is ArvidNotice]
    assert any("resized 640x480" in m for m in messages) and any("grayscale" in m for m in messages)
    assert all(w.filename == __file__ for w in said)  # each points at the caller's line
    with pytest.warns(ArvidNotice) as said:
        list(model.stream(2, video))
    assert len(said) == 2 and "grayscale" in str(said[1].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.extend(np.zeros((3, H, W, 1), np.uint8), 2)  # nothing to say about a clip that fits


def test_the_api_lists_its_options_and_can_show_progress(model, capsys):
    text = pydoc.render_doc(Arvid.generate, renderer=pydoc.plaintext)
    settings = ("seed", "labels", "batch", "sampling", *Sampling.settings(), "progress")
    for method in (Arvid.generate, Arvid.extend, Arvid.stream):
        params = inspect.signature(method).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
        assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in settings), method.__name__
    assert all(f"{name}:" in text for name in settings)
    assert {"seed", "labels", "batch", "sampling"} <= set(inspect.signature(Arvid.latents).parameters)
    clip = model.generate(3, seed=1, progress=True)
    assert np.array_equal(clip, model.generate(3, seed=1))
    bar = capsys.readouterr().err
    assert "3/3" in bar and "frame/s" in bar


def test_extend_prefills_at_most_the_window(model):
    video = np.zeros((41, H, W, 1), dtype=np.uint8)  # 21 latent frames
    prepared = model.prepare(video)
    assert prepared.context.shape == (1, model.generator.config.window_frames, H // 4, W // 4)


def test_generation_runs_past_the_window(model):
    # (20x the window, with peak memory, is measured in benchmarks/bench_pipeline.py)
    cfg = model.generator.config
    frames = 4 * cfg.window_frames * model.temporal_factor
    clip = model.generate(frames, seed=0)
    assert clip.shape[1] == frames and clip[0, -1].std() > 0  # still producing content, not a constant


def test_pipeline_errors_are_clear(model, model_dir, tmp_path):
    with pytest.raises(ArvidError, match="positive"):
        model.generate(0)
    with pytest.raises(ArvidError, match="labels"):
        model.generate(3, labels=[3])
    with pytest.raises(ArvidError, match="does not exist"):
        Arvid.from_pretrained(tmp_path / "nope")
    with pytest.raises(ArvidError, match="no generator/"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "tokenizer").mkdir()
        Arvid.from_pretrained(tmp_path / "half")
    # settings are checked when the call is made, before a frame is made or an input is tokenized
    for bad, message in ((dict(temperature=-1), "temperature must be >= 0"), (dict(top_p=1.5), r"top-p must be in \(0, 1\]"),
                         (dict(min_p=float("nan")), "min-p must be in"), (dict(top_k=-1), "top-k must be a whole number >= 0"),
                         (dict(batch=0), "batch must be a positive integer"),
                         (dict(sampling=Sampling(), top_k=3), "not both")):
        with pytest.raises(ArvidError, match=message):
            model.stream(3, **bad)
    with pytest.raises(TypeError, match="topk"):  # the options are named parameters: a misspelt one is refused
        model.stream(3, topk=3)
    calls = []
    model.prepare, prepare = (lambda *a, **k: calls.append(a)), model.prepare
    try:
        for bad, message in ((dict(guidance=3.0), "guidance 3 needs labels"), (dict(labels=[3, 12]), "out of range"),
                             (dict(top_p=0), "top-p")):
            with pytest.raises(ArvidError, match=message):
                model.extend(np.zeros((3, 16, 16, 1), np.uint8), 2, **bad)
        assert not calls  # refused before the input was fitted and tokenized
    finally:
        model.prepare = prepare
    tok = Tokenizer.from_pretrained(model_dir / "tokenizer")
    other = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size + 1))
    with pytest.raises(ArvidError, match="not trained together"):
        Arvid(tok, other, "cpu")


class Result:
    def __init__(self, returncode, out):
        self.returncode, self.stdout, self.stderr = returncode, out.out, out.err


@pytest.fixture
def cli(capsys):
    """Run `arvid ARGS` in this process (the subprocess entry point is covered by tests/test_cli.py)."""
    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return Result(code, capsys.readouterr())
    return run


def test_cli_generate_and_extend_write_the_right_frames(model_dir, tmp_path, cli):
    from arvid.video import read_video

    out = tmp_path / "clip.npy"
    r = cli("generate", "--frames", 6, "--out", out, "--model", model_dir, "--seed", 5, "--label", "3,7",
            "--sheet", tmp_path / "sheet.png", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and str(out) in r.stdout
    clip = read_video(out).frames
    assert clip.shape == (6, H, W, 1) and (tmp_path / "sheet.png").is_file()
    again = tmp_path / "again.npy"
    assert cli("generate", "--frames", 6, "--out", again, "--model", model_dir, "--seed", 5, "--label", "3,7").returncode == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, identical file

    ext = tmp_path / "ext.npy"
    r = cli("extend", out, "--frames", 4, "--out", ext, "--model", model_dir, "--batch", 2)
    assert r.returncode == 0, r.stderr
    for i in range(2):
        longer = read_video(tmp_path / f"ext_{i}.npy").frames
        assert longer.shape == (10, H, W, 1) and np.array_equal(longer[:6], clip)


@pytest.mark.parametrize("args,message", [
    (["generate", "--frames", 0, "--out", "OUT/x.npy"], "--frames"),
    (["generate", "--frames", 2, "--out", "OUT/missing/x.npy"], "does not exist"),
    (["generate", "--frames", 2, "--out", "OUT/x.npy", "--label", "a,b"], "--label"),
    (["extend", "OUT/nothing.mp4", "--frames", 2, "--out", "OUT/x.npy"], "nothing.mp4"),
    (["generate", "--frames", 2, "--out", "OUT/x.npy", "--model", "OUT"], "tokenizer/"),
])
def test_cli_errors_are_one_line_exit_2_and_leave_no_file(model_dir, tmp_path, args, message, cli):
    args = [str(a).replace("OUT", str(tmp_path)) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("arvid: error:") and message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("args,message", [
    (["--temperature", "-1"], "--temperature must be >= 0 (0: greedy), got -1.0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1] (1: off), got 1.5"),
    (["--min-p", "nan"], "--min-p must be in [0, 1] (0: off), got nan"),
    (["--top-k", "-2"], "--top-k must be a whole number >= 0 (0: off), got -2"),
    (["--guidance", "3"], "guidance 3 needs labels: give labels (--label)"),
    (["--label", "3"], "give 2 integer label(s) per clip"),
])
@pytest.mark.parametrize("command", ["generate", "extend"])
def test_cli_sampling_errors_name_the_flag_before_any_work(model_dir, tmp_path, args, message, command, cli):
    """A bad sampling flag is refused before the model samples (no progress bar) and, for extend, before the
    input is read: the missing input below would otherwise be the error."""
    head = ["extend", tmp_path / "missing.mp4"] if command == "extend" else ["generate"]
    r = cli(*head, "--frames", 2, "--out", tmp_path / "x.npy", "--model", model_dir, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "generating" not in r.stderr and "missing.mp4" not in r.stderr
    assert not (tmp_path / "x.npy").exists()


def test_cli_pack_joins_two_trained_parts_into_a_model_folder(model_dir, model, tmp_path, cli):
    out = tmp_path / "packed"
    r = cli("pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator", "--out", out)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout and "τ=2" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["generator", "tokenizer"]
    packed = Arvid.from_pretrained(out, device="cpu")
    np.testing.assert_array_equal(packed.generate(3, seed=2), model.generate(3, seed=2))
    # an existing folder is never overwritten, and a mismatched pair writes nothing
    r = cli("pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator", "--out", out)
    assert r.returncode == 2 and "already exists" in r.stderr
    other = tmp_path / "other-gen"
    Generator(GeneratorConfig.from_name("tiny", vocab_size=7)).save_pretrained(other)
    r = cli("pack", "--tokenizer", model_dir / "tokenizer", "--generator", other, "--out", tmp_path / "bad")
    assert r.returncode == 2 and "not trained together" in r.stderr
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))


def test_the_default_model_ships_in_the_package_and_generates_labelled_digits():
    from arvid.pipeline import DEFAULT_MODEL_DIR

    files = sorted(DEFAULT_MODEL_DIR.rglob("*.safetensors"))
    assert [f.parent.name for f in files] == ["generator", "reader", "tokenizer"]
    assert all(f.stat().st_size < 16 * 2**20 for f in files), "each weights file must stay under 16 MiB"
    model = Arvid.from_pretrained(device="cpu")
    assert model.resolution == (64, 64) and model.generator.config.conditional
    assert model.layered and model.temporal_factor == 16  # a reference picture, then 16 frames per latent frame
    clip = model.generate(3, seed=0, labels=[3, 7], batch=2)
    assert clip.shape == (2, 3, 64, 64, 1)
    # a trained model draws digits on black: mostly dark, some bright strokes (an untrained one makes gray noise)
    assert 0.5 < (clip < 40).mean() < 0.99 and (clip > 200).mean() > 0.005


def test_a_models_sampling_json_fills_what_the_caller_leaves_unset(model, model_dir, tmp_path, cli):
    """sampling.json holds the model's recommended decoding; explicit options win; guidance needs labels."""
    tuned = Arvid(model.tokenizer, model.generator, "cpu", {"top_p": 0.5, "guidance": 3.0})
    tuned.save_pretrained(tmp_path / "tuned")
    assert (tmp_path / "tuned" / "sampling.json").exists()
    tuned = Arvid.from_pretrained(tmp_path / "tuned", device="cpu")
    labelled = dict(seed=2, labels=[3, 7])
    np.testing.assert_array_equal(tuned.generate(3, **labelled), model.generate(3, top_p=0.5, guidance=3.0, **labelled))
    assert not np.array_equal(tuned.generate(3, **labelled), tuned.generate(3, top_p=1, guidance=1, **labelled))
    np.testing.assert_array_equal(tuned.generate(3, seed=2), model.generate(3, seed=2, top_p=0.5))  # no labels: no guidance
    # 1 switches top-p and guidance off, and guidance 1 skips the unconditional pass (the same tokens, half the work)
    assert tuned.sampling([3, 7], top_p=1, guidance=1) == Sampling()
    np.testing.assert_array_equal(model.generate(3, guidance=1, **labelled), model.generate(3, **labelled))
    # the same for min-p and top-k: the model's values fill in, 0 switches them off
    steady = Arvid(model.tokenizer, model.generator, "cpu", {"min_p": 0.2, "top_k": 8})
    np.testing.assert_array_equal(steady.generate(5, seed=1), model.generate(5, seed=1, min_p=0.2, top_k=8))
    assert steady.sampling(min_p=0, top_k=0) == Sampling()
    np.testing.assert_array_equal(steady.generate(5, seed=1, min_p=0, top_k=0), model.generate(5, seed=1))
    # a whole Sampling is taken as it is: the recommendation does not touch it
    np.testing.assert_array_equal(steady.generate(5, seed=1, sampling=Sampling()), model.generate(5, seed=1))
    # pack writes it; a bad file is refused with what is wrong, and nothing is written
    (tmp_path / "s.json").write_text('{"top_p": 0.9, "guidance": 3}')
    r = cli("pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator",
            "--out", tmp_path / "packed", "--sampling", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert Arvid.from_pretrained(tmp_path / "packed").recommended == {"top_p": 0.9, "guidance": 3}
    for text, message in (('{"top_p": 2}', "top-p must be in (0, 1]"), ('{"topp": 0.9}', "expected a JSON object"),
                          ('{"min_p": -1}', "min-p must be in [0, 1]"), ('{"history_guidance": 2}', "expected a JSON object"),
                          ('{"top_k": 2.5}', "top-k must be a whole number"), ("[0.9", "cannot read sampling")):
        (tmp_path / "bad.json").write_text(text)
        r = cli("pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator",
                "--out", tmp_path / "bad", "--sampling", tmp_path / "bad.json")
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()
