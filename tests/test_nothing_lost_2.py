"""Nothing lost, second pass (issue 33): a user's files next to arvid's outputs, a Ctrl-C whose stderr is a
closed pipe, the other signals, names the final rename cannot take, training's sweep of temporaries.

Each case asserts the exit code, one `arvid: error:` line (no traceback) for a refusal, the user's files
unchanged, and no temporary left. Cases that need a real process (a pipe, a signal) run `python -m arvid`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from arvid.cli.main import main
from arvid.kernels import use_backend
from cli_cases import listing, no_temporaries, refused, run
from corpus import tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(autouse=True)
def pytorch_attention():
    with use_backend("pytorch"):
        yield

STARTED = re.compile(rb"generating:[^\r\n]*\| *[1-9]\d*/")  # the bar has counted at least one frame


# ---------------------------------------------------------------- a process whose stderr is gone, other signals

ENV = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    """In the child: the signals these tests send, back to their defaults. A child inherits a signal its parent
    ignores, and the suite's own process may ignore some: SIGINT in a background job, SIGHUP under nohup."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def arvid_process(model_dir, out, frames, **popen) -> subprocess.Popen:
    popen.setdefault("preexec_fn", _default_sigint)
    return subprocess.Popen([sys.executable, "-m", "arvid", "generate", "--model", str(model_dir), "--frames",
                             str(frames), "--out", str(out), "--device", "cpu"], env=ENV, **popen)


def wait_for_bar(proc: subprocess.Popen, timeout: float = 120) -> None:
    import select

    fd, seen, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while not STARTED.search(seen):
        assert time.monotonic() < deadline, seen[-2000:]
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"arvid exited ({proc.wait()}) before the bar started: {seen[-2000:]!r}"
            seen += chunk


def finished(proc: subprocess.Popen, timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_with_stderr_a_closed_pipe_keeps_the_frames(model_dir, tmp_path):
    """`arvid generate ... 2>&1 | tee log` and Ctrl-C: the terminal stops tee too, so arvid's stderr is a pipe
    no one reads. Saying so must not cost the frames."""
    from arvid.video import read_video

    out = tmp_path / "o.npy"
    proc = arvid_process(model_dir, out, 100000, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=_default_sigint)
    try:
        wait_for_bar(proc)
        proc.stderr.close()  # tee is gone
        proc.send_signal(signal.SIGINT)
    finally:
        code = finished(proc)
    assert code == 130
    assert len(read_video(out)) >= 1
    no_temporaries(tmp_path)


@pytest.mark.parametrize("stderr", ["closed", "full"])
def test_a_closed_or_full_stderr_costs_nothing(model_dir, tmp_path, stderr):
    """`2>&-` and `2>/dev/full`: the clip is written and the command succeeds."""
    from arvid.video import read_video

    out = tmp_path / "o.npy"
    if stderr == "closed":
        proc = arvid_process(model_dir, out, 3, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(2))
    else:
        with open("/dev/full", "w") as full:
            proc = arvid_process(model_dir, out, 3, stdout=subprocess.DEVNULL, stderr=full)
    assert finished(proc, 120) == 0
    assert len(read_video(out)) == 3
    no_temporaries(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1])
def test_hangup_quit_and_usr1_keep_the_frames_as_sigterm_does(model_dir, tmp_path, sig):
    from arvid.video import read_video

    out = tmp_path / "o.npy"
    proc = arvid_process(model_dir, out, 100000, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_bar(proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        code = finished(proc)
    assert code == 128 + sig
    assert len(read_video(out)) >= 1
    assert "holds the" in err.decode() and "Traceback" not in err.decode()
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- outputs replace only what arvid wrote


def test_a_png_folder_of_the_users_own_frames_is_refused(model_dir, tmp_path, capsys):
    """`--out shots` where shots/ holds the user's frame_0001.png ... frame_0005.png (named like arvid's, without
    arvid's mark): nothing of them is deleted."""
    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(1, 6):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(shots / f"frame_{i:04d}.png")
    before = listing(tmp_path)
    refused(capsys, "generate", "--frames", 2, "--out", shots, "--model", model_dir, match="frame_0001.png")
    assert listing(tmp_path) == before
    # a folder arvid wrote is written again
    code, _ = run(capsys, "generate", "--frames", 2, "--out", tmp_path / "mine", "--model", model_dir)
    assert code == 0
    assert run(capsys, "generate", "--frames", 3, "--out", tmp_path / "mine", "--model", model_dir)[0] == 0
    assert len(list((tmp_path / "mine").iterdir())) == 3
    no_temporaries(tmp_path)


def test_a_sheet_inside_the_png_folder_output_is_refused(model_dir, tmp_path, capsys):
    out = tmp_path / "frames"
    assert run(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir)[0] == 0
    before = listing(tmp_path)
    refused(capsys, "generate", "--frames", 2, "--out", out, "--sheet", out / "frame_00001.png", "--model", model_dir,
            match="--sheet")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- what the final rename needs, checked before work


@pytest.mark.parametrize("kind", ["dangling", "to a folder", "to a folder, png"])
def test_a_symlink_at_the_output_is_refused_before_work(model_dir, tmp_path, capsys, kind):
    (tmp_path / "folder").mkdir()
    link = tmp_path / ("frames" if kind.endswith("png") else "o.npy")
    link.symlink_to(tmp_path / ("nowhere" if kind == "dangling" else "folder"))
    before = listing(tmp_path)
    refused(capsys, "generate", "--frames", 2, "--out", link, "--model", model_dir, match="symbolic link")
    assert listing(tmp_path) == before


def test_a_name_whose_temporary_is_too_long_is_refused_before_work(model_dir, tmp_path, capsys):
    out = tmp_path / ("a" * 247 + ".mp4")  # 251 bytes: the name fits, its temporary's (.NAME.XXXXXXXX.tmp.mp4) not
    refused(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir, match="bytes long")
    assert list(tmp_path.iterdir()) == []


def test_a_mount_point_at_the_output_is_refused_before_work(model_dir, tmp_path, capsys, monkeypatch):
    """A Docker volume (a mounted folder or a bind-mounted file) cannot be renamed over: EBUSY after all the work."""
    out = tmp_path / "o.npy"
    out.write_bytes(b"a bind-mounted file")
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out) or real_ismount(p))
    refused(capsys, "generate", "--frames", 2, "--out", out, "--model", model_dir, match="mount point")
    assert out.read_bytes() == b"a bind-mounted file"


# ---------------------------------------------------------------- training sweeps only its own temporaries


def test_training_start_up_keeps_the_users_hidden_files(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / ".gitignore").write_text("*\n")
    (run_dir / "checkpoints" / ".notes").mkdir()
    (run_dir / "checkpoints" / ".notes" / "mine.txt").write_text("mine")
    (run_dir / ".notes").mkdir()
    (run_dir / ".notes" / "mine.txt").write_text("mine")
    (run_dir / "checkpoints" / ".step-00000001.abcd_123.tmp").mkdir()  # what a killed run left: swept
    assert main(["train", "toy", "--out", str(run_dir), "--steps", "2", "--ckpt-every", "1"]) == 0
    assert (run_dir / "checkpoints" / ".gitignore").read_text() == "*\n"
    assert (run_dir / "checkpoints" / ".notes" / "mine.txt").read_text() == "mine"
    assert (run_dir / ".notes" / "mine.txt").read_text() == "mine"
    no_temporaries(run_dir)


# ---------------------------------------------------------------- the overwrite rule: files only with --overwrite


@pytest.mark.parametrize("command", ["generate", "sheet", "tokenize", "detokenize"])
def test_an_existing_file_is_replaced_only_with_overwrite(model_dir, tmp_path, capsys, command):
    from arvid.video import write_video

    src = write_video(tmp_path / "src.npy", np.zeros((3, 16, 16, 1), np.uint8))
    codes = tmp_path / "codes.npz"
    assert run(capsys, "tokenize", src, "--out", codes, "--model", model_dir)[0] == 0
    mine = tmp_path / ("mine.npz" if command == "tokenize" else "mine.png" if command == "sheet" else "mine.npy")
    mine.write_bytes(b"the user's own file")
    argv = {"generate": ["generate", "--frames", 2, "--out", mine],
            "sheet": ["generate", "--frames", 2, "--out", tmp_path / "new.npy", "--sheet", mine],
            "tokenize": ["tokenize", src, "--out", mine],
            "detokenize": ["detokenize", codes, "--out", mine]}[command] + ["--model", model_dir]
    before = listing(tmp_path)
    refused(capsys, *argv, match="--overwrite")
    assert listing(tmp_path) == before
    assert run(capsys, *argv, "--overwrite")[0] == 0
    assert mine.read_bytes() != b"the user's own file"
    no_temporaries(tmp_path)


def test_bench_never_writes_over_a_users_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("summary.md", "benchmark.json", "vs_baseline.png"):
        (mine / name).write_text(f"the user's own {name}")
    before = listing(tmp_path)
    refused(capsys, "bench", "generation", "--quick", "--device", "cpu", "--out", mine, match="did not write")
    assert listing(tmp_path) == before


def test_eval_generation_never_writes_over_a_users_files(model_dir, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("the user's own report")
    before = listing(tmp_path)
    refused(capsys, "eval", "generation", "--out", mine, "--model", model_dir, match="did not write")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- arvid data: whole or nothing


def test_an_interrupted_data_command_leaves_nothing_and_can_run_again(tmp_path, capsys, monkeypatch):
    import arvid.video

    out = tmp_path / "data"
    calls = {"n": 0}
    real = arvid.video.write_video

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(arvid.video, "write_video", interrupted)
    argv = ["data", "shapes", "--out", out, "--count", 3, "--frames", 2, "--size", 16, "--format", "npy"]
    code, lines = run(capsys, *argv)
    assert code == 130 and "arvid: interrupted: nothing was written" in lines[-1], lines
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    monkeypatch.setattr(arvid.video, "write_video", real)
    assert run(capsys, *argv)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "sample_000.npy", "sample_001.npy",
                                                     "sample_002.npy", "sheet.png"]
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- an interrupted detokenize says what it kept


def test_an_interrupted_detokenize_keeps_a_valid_shorter_file_and_says_so(model_dir, tmp_path, capsys, monkeypatch):
    import arvid.tokenizer
    from arvid.video import read_video, write_video

    src = write_video(tmp_path / "src.npy", np.zeros((9, 16, 16, 1), np.uint8))
    codes = tmp_path / "codes.npz"
    assert run(capsys, "tokenize", src, "--out", codes, "--model", model_dir)[0] == 0
    import arvid.cli.tokenize as cli_tokenize

    monkeypatch.setattr(cli_tokenize, "CHUNK_LATENT", 1)  # one latent frame at a time: 1, then 2 frames each
    real, calls = arvid.tokenizer.tensor_to_video, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(arvid.tokenizer, "tensor_to_video", interrupted)
    out = tmp_path / "o.npy"
    code, lines = run(capsys, "detokenize", codes, "--out", out, "--model", model_dir)
    assert code == 130 and len(lines) == 1, lines
    kept = len(read_video(out))
    assert 0 < kept < 9
    assert lines[0] == f"arvid: interrupted: {out} holds the {kept} frames decoded so far (a shorter clip than the 9 " \
                       "the codes hold)", lines
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- save_pretrained


def test_save_pretrained_into_an_earlier_model_folder_drops_its_decoding_settings(model_dir, tmp_path):
    import shutil

    from arvid.pipeline import Arvid

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "sampling.json").write_text('{"temperature": 0.3}')
    Arvid.from_pretrained(model_dir, device="cpu").save_pretrained(folder)  # a model with no recommendation
    assert Arvid.from_pretrained(folder, device="cpu").recommended == {}


def test_save_pretrained_onto_a_file_is_an_arvid_error(model_dir, tmp_path):
    from arvid.errors import ArvidError
    from arvid.pipeline import Arvid

    (tmp_path / "f").write_text("mine")
    with pytest.raises(ArvidError, match="is a file"):
        Arvid.from_pretrained(model_dir, device="cpu").save_pretrained(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "mine"


# ---------------------------------------------------------------- hostile model files


def test_a_float64_weight_too_large_for_float32_is_refused(model_dir, tmp_path, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    path = folder / "generator" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], 1e300, dtype=torch.float64)
    save_file(tensors, str(path), metadata=metadata)
    refused(capsys, "generate", "--frames", 2, "--out", tmp_path / "o.npy", "--model", folder, match=name)
    assert not (tmp_path / "o.npy").exists()
    no_temporaries(tmp_path)
