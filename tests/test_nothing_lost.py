"""Nothing a user owns is ever lost: outputs never replace inputs or files arvid did not write, limits and
flags are checked before work, JSON files are read within limits, every error is one line.

Through the CLI in this process (the same code path as the console script): each case asserts the exit code,
one stderr line with no traceback, nothing left behind, and the input's bytes unchanged. Interrupts (Ctrl-C,
SIGTERM) are tests/test_interrupt.py's.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arvid.cli.main import main
from arvid.kernels import use_backend
from cli_cases import listing, refused, run
from corpus import tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(autouse=True)
def pytorch_attention():
    with use_backend("pytorch"):
        yield


def clip(T: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (T, 16, 16, 1), dtype=np.uint8)


# ---------------------------------------------------------------- outputs never touch what arvid did not make


@pytest.mark.parametrize("kind", ["mp4", "npy", "png", "alias"])
def test_extend_never_writes_over_its_input(model_dir, tmp_path, capsys, kind):
    from arvid.video import write_video

    (tmp_path / "sub").mkdir()
    src = write_video(tmp_path / ("frames" if kind == "png" else f"clip.{'npy' if kind == 'npy' else 'mp4'}"), clip())
    out = tmp_path / "sub" / ".." / src.name if kind == "alias" else src
    before = listing(tmp_path)
    refused(capsys, "extend", src, "--frames", 2, "--out", out, "--model", model_dir, match="never writes over its input")
    assert listing(tmp_path) == before


def test_a_png_folder_output_removes_only_arvids_frame_files(model_dir, tmp_path, capsys):
    out = tmp_path / "frames"
    (out / "frame_00001.png").mkdir(parents=True)  # a folder named like a frame, with the user's file in it
    (out / "frame_00001.png" / "notes.txt").write_text("mine")
    (tmp_path / ".frames.old").mkdir()  # the user's own folder beside it
    (tmp_path / ".frames.old" / "keep.txt").write_text("mine too")
    before = listing(tmp_path)
    refused(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir, match="holds other files")
    assert listing(tmp_path) == before
    (out / "frame_00001.png" / "notes.txt").unlink()
    (out / "frame_00001.png").rmdir()
    code, _ = run(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir)
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert (tmp_path / ".frames.old" / "keep.txt").read_text() == "mine too"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".frames.old", "frames"]


def test_data_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sheet.png").write_bytes(b"the user's own sheet")
    (out / "labels.json").write_text('{"not": "arvid"}')
    before = listing(tmp_path)
    refused(capsys, "data", "shapes", "--out", out, "--count", 1, "--frames", 2, "--size", 16, match="did not write")
    assert listing(tmp_path) == before
    fresh = tmp_path / "fresh"
    assert run(capsys, "data", "shapes", "--out", fresh, "--count", 1, "--frames", 2, "--size", 16, "--format", "npy")[0] == 0
    # a folder an earlier `arvid data` wrote is written again
    assert run(capsys, "data", "shapes", "--out", fresh, "--count", 1, "--frames", 3, "--size", 16, "--format", "npy")[0] == 0


# ---------------------------------------------------------------- limits and flags before work


@pytest.mark.parametrize("argv,match", [
    (["--frames", 10**12], "--frames 1,000,000,000,000 is over arvid's limit"),
    (["--frames", 2, "--batch", 10**6], "--batch 1,000,000 is over arvid's limit"),
    (["--frames", 2, "--fps", 0], "--fps must be a frame rate in (0, 1000]"),
    (["--frames", 2, "--fps", -5], "--fps must be a frame rate"),
    (["--frames", 2, "--fps", "nan"], "--fps must be a frame rate"),
    (["--frames", 2, "--seed", 2**70], "--seed must be a whole number from 0 to 2**63 - 1"),
    (["--frames", 2, "--device", "meta"], "device 'meta' cannot run arvid"),
    (["--frames", 2, "--top-k", -2], "--top-k must be"),
    (["--frames", 2, "--threads", 0], "--threads must be a whole number"),
    (["--frames", "two"], "invalid int value"),
])
def test_generate_refuses_bad_flags_before_any_work(model_dir, tmp_path, capsys, argv, match):
    refused(capsys, "generate", "--out", tmp_path / "x.mp4", "--model", model_dir, *argv, match=match)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out,match", [("", "current folder"), (".", "current folder"),
                                       ("a" * 300 + ".mp4", "at most 255")])
def test_bad_output_names_are_refused_in_one_line(model_dir, tmp_path, capsys, monkeypatch, out, match):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir, match=match)
    assert list(tmp_path.iterdir()) == []


def test_a_control_character_in_a_path_is_escaped_and_the_error_stays_one_line(model_dir, tmp_path, capsys):
    refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "ne\nw" / "x.mp4", "--model", model_dir,
            match="ne\\nw")
    refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "x.mp4", "--model", model_dir, "--seed", "1\n2",
            match="1\\n2")


def test_an_empty_label_flag_is_refused_not_read_as_unconditional(model_dir, tmp_path, capsys):
    for value in ("", ",", " "):
        refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "x.npy", "--model", model_dir, f"--label={value}",
                match="names no label")
    assert not list(tmp_path.iterdir())


def test_negative_labels_read_as_labels_and_train_out_must_be_a_folder(model_dir, tmp_path, capsys):
    code, _ = run(capsys, "generate", "--frames", 1, "--out", tmp_path / "x.npy", "--label", "-1,3")  # the shipped model
    assert code == 0
    (tmp_path / "afile").write_text("x")
    refused(capsys, "train", "toy", "--out", tmp_path / "afile", match="must name a folder")


def test_tokenize_refuses_a_size_that_does_not_fit_in_memory(tmp_path, capsys):
    from arvid.video import write_video

    write_video(tmp_path / "clip.npy", np.zeros((5, 64, 64, 1), np.uint8))
    refused(capsys, "tokenize", tmp_path / "clip.npy", "--size", 40000, "--out", tmp_path / "c.npz", match="of memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]


# ---------------------------------------------------------------- JSON within limits


@pytest.mark.parametrize("where", ["config", "sampling", "state"])
def test_json_with_huge_integers_or_nan_is_one_line_error(model_dir, tmp_path, capsys, where):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    if where == "config":
        path = model / "generator" / "config.json"
        path.write_text(path.read_text().replace('"n_layer": 2', '"n_layer": ' + "9" * 5000))
        refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "x.npy", "--model", model, match="5000 digits")
    elif where == "sampling":
        (model / "sampling.json").write_text('{"temperature": NaN}')
        refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "x.npy", "--model", model, match="NaN")
    else:
        out = tmp_path / "run"
        assert main(["train", "toy", "--out", str(out), "--steps", "2"]) == 0
        for state in out.rglob("trainer_state.json"):
            data = json.loads(state.read_text())
            data["rng"] = [{"torch": 1}]
            state.write_text(json.dumps(data))
        refused(capsys, "train", "toy", "--out", out, "--resume", "--steps", "3", match="rng must be a list")


# ---------------------------------------------------------------- fuzz


FLAG_VALUES = st.sampled_from(["0", "-1", "1", "2", "3.5", "nan", "inf", "-inf", "1e308", "x", "", "9" * 40, "9" * 400, "-0"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.dictionaries(st.sampled_from(["--frames", "--fps", "--seed", "--temperature", "--top-k", "--top-p",
                                              "--min-p", "--guidance", "--steps", "--choice-temperature", "--batch",
                                              "--threads", "--label"]), FLAG_VALUES, max_size=4))
def test_fuzzed_generate_flags_succeed_or_fail_in_one_line(model_dir, tmp_path, capsys, flags):
    flags = {"--frames": "2", **flags}
    if flags["--frames"] not in ("1", "2", "3.5", "x", "", "0", "-1", "-0"):  # keep the successful runs short
        flags["--frames"] = "2"
    if flags.get("--batch") not in (None, "1", "2"):
        flags["--batch"] = "1" if flags["--batch"] not in ("0", "-1", "x", "", "nan", "3.5") else flags["--batch"]
    argv = ["generate", "--out", tmp_path / "x.npy", "--model", model_dir]
    for k, v in flags.items():
        argv += [f"{k}={v}"]
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: exit 2 after its one line
        code = e.code
    err = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip() and "generating" not in line]
    assert code in (0, 2), (argv, err)
    assert (code == 0 and not err) or (code == 2 and len(err) == 1 and "error:" in err[0] and "Traceback" not in err[0]), \
        (argv, err)
    for p in tmp_path.iterdir():
        assert not p.name.startswith("."), p  # no temporary left behind
        p.unlink()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=80), st.sampled_from(['{"temperature": 1e999}', '{"top_k": ' + "1" * 5000 + "}",
                                                             "[" * 100000, '{"steps": 0}', '{"steps": 3}'])))
def test_fuzzed_sampling_files_load_or_fail_in_one_line(model_dir, tmp_path, capsys, text):
    import shutil

    model = tmp_path / "m"
    if not model.exists():
        shutil.copytree(model_dir, model)
    (model / "sampling.json").write_text(text)
    capsys.readouterr()
    code = main(["generate", "--frames", "1", "--out", str(tmp_path / "x.npy"), "--model", str(model)])
    err = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip() and "generating" not in line]
    assert (code == 0 and not err) or (code == 2 and len(err) == 1 and err[0].startswith("arvid: error:")), err
    if (tmp_path / "x.npy").exists():
        os.unlink(tmp_path / "x.npy")


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.text(max_size=12), st.sampled_from([0, 1, -1, 2**31, 1e300, "raster", "masked", "fsq"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


def _one_line_outcome(capsys, argv) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = [line for line in re.split(r"[\r\n]", capsys.readouterr().err)
           if line.strip() and not line.startswith(("generating", "train", "decoding"))]
    assert (code == 0 and not err) or (code == 2 and len(err) == 1 and err[0].startswith("arvid")
                                       and "error:" in err[0] and "Traceback" not in err[0]), (argv, code, err)
    return code, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(part=st.sampled_from(["generator", "tokenizer"]), data=st.data())
def test_fuzzed_model_configs_load_or_fail_in_one_line(model_dir, tmp_path, capsys, part, data):
    """Any field of a model folder's config.json set to any JSON value (or a key added or removed)."""
    import shutil

    model = tmp_path / "m"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(model_dir, model)
    path = model / part / "config.json"
    config = json.loads(path.read_text())
    key = data.draw(st.sampled_from(sorted(config) + ["unknown_field"]), label="key")
    if data.draw(st.booleans(), label="remove") and key in config:
        del config[key]
    else:
        config[key] = data.draw(JSON_VALUES, label="value")
    path.write_text(json.dumps(config))
    out = tmp_path / "x.npy"
    _one_line_outcome(capsys, ["generate", "--frames", 1, "--out", out, "--model", model])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    out.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", "toy", "--out", str(out), "--steps", "2", "--ckpt-every", "1"]) == 0
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_trainer_states_resume_or_fail_in_one_line(toy_run, tmp_path, capsys, data):
    """Any field of trainer_state.json (at any depth of its first level) set to any JSON value, then --resume."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(toy_run, run_dir)
    path = run_dir / "trainer_state.json"
    state = json.loads(path.read_text())
    key = data.draw(st.sampled_from(sorted(state)), label="key")
    value = state[key]
    if isinstance(value, dict) and value and data.draw(st.booleans(), label="deeper"):
        inner = data.draw(st.sampled_from(sorted(value)), label="inner key")
        value[inner] = data.draw(JSON_VALUES, label="inner value")
    else:
        state[key] = data.draw(JSON_VALUES, label="value")
    path.write_text(json.dumps(state))
    _one_line_outcome(capsys, ["train", "toy", "--out", run_dir, "--resume", "--steps", 3])


@pytest.fixture(scope="module")
def code_file(model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("codes")
    np.save(folder / "clip.npy", clip(5))
    assert main(["tokenize", str(folder / "clip.npy"), "--model", str(model_dir), "--out", str(folder / "c.npz")]) == 0
    with np.load(folder / "c.npz") as f:
        return {k: f[k] for k in f.files}


ARRAYS = st.one_of(
    st.sampled_from([np.zeros((0,), np.uint16), np.zeros((3, 1024, 1024), np.uint8), np.array("x"), np.array(1.5),
                     np.array([1, 2]), np.full((3, 4, 4), 65535, np.uint16), np.full((3, 4, 4), -1, np.int32),
                     np.array(2**62), np.array(-7), np.zeros((2, 2, 2, 2), np.int64), np.zeros((3, 4, 4), np.float32)]),
    st.integers(-2**63, 2**63 - 1).map(np.array))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_code_files_decode_or_fail_in_one_line(model_dir, code_file, tmp_path, capsys, data):
    """Any array of a code file replaced (or dropped, or one added), then detokenize."""
    arrays = dict(code_file)
    key = data.draw(st.sampled_from(sorted(arrays) + ["extra"]), label="key")
    if data.draw(st.booleans(), label="remove") and key in arrays:
        del arrays[key]
    else:
        arrays[key] = data.draw(ARRAYS, label="array")
    path = tmp_path / "c.npz"
    np.savez(path, **arrays)
    out = tmp_path / "back.npy"
    _one_line_outcome(capsys, ["detokenize", path, "--model", model_dir, "--out", out])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    out.unlink(missing_ok=True)
