"""Ctrl-C and SIGTERM during `arvid generate` and `extend`: the frames made so far are kept as a valid,
shorter video at the output path, one clean line says how many, the exit code is 130 (143 for SIGTERM), and
no temporary is left.

The first tests stop a real `python -m arvid` subprocess once its progress bar has counted frames. The
others interrupt the writing itself (in this process, by making the writer raise KeyboardInterrupt in the
middle of a frame), which is the moment a broken frame could appear: the frames before it stay whole.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arvid.cli.main import main
from corpus import tiny_model_dir
from arvid.kernels import use_backend

STARTED = re.compile(rb"generating:[^\r\n]*\| *[1-9]\d*/")  # the bar has counted at least one frame


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


def read_until(proc: subprocess.Popen, pattern: re.Pattern, timeout: float) -> bytes:
    """Read the child's stderr (tqdm writes '\\r', not lines) until `pattern` matches; fail on timeout or exit."""
    fd, seen, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while not pattern.search(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"no progress bar after {timeout} s: {seen[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"arvid exited (code {proc.wait()}) before the bar started: {seen[-2000:]!r}"
            seen += chunk
    return seen


def _default_sigint() -> None:
    """Give the child the Ctrl-C a terminal user has. A shell that starts a job in the background (`cmd &`,
    as CI runners and nohup do) sets SIGINT to ignored, children inherit that, and Python then installs
    no KeyboardInterrupt handler: the child would rightly ignore the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_while_generating(model_dir, tmp_path, sig, command=("generate",)):
    """Run arvid until its bar has counted frames, send `sig`; -> (exit code, stderr lines, stdout)."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "arvid", *command, "--model", str(model_dir), "--frames", "100000",
                             "--out", str(out / "clip.mp4"), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_default_sigint)
    try:
        seen = read_until(proc, STARTED, timeout=120)
        proc.send_signal(sig)
        stdout, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode()
    return proc.returncode, [line.strip() for line in re.split(r"[\r\n]", err) if line.strip()], stdout, out


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_generation_keeps_the_frames_made_so_far(model_dir, tmp_path, sig, code):
    from arvid.video import read_video

    returncode, lines, stdout, out = stop_while_generating(model_dir, tmp_path, sig)
    assert returncode == code, lines[-5:]
    said = re.fullmatch(r"arvid: interrupted: (.*clip\.mp4) holds the (\d+) frames made so far", lines[-1])
    assert said, lines[-5:]
    assert all(line.startswith("generating:") for line in lines[:-1]), lines[-5:]  # nothing but the bar before it
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in lines)
    assert stdout == b""
    assert [p.name for p in out.iterdir()] == ["clip.mp4"]  # the video, no temporary
    assert read_video(out / "clip.mp4").frames.shape[0] == int(said.group(2)) >= 1


def test_a_stopped_extension_keeps_the_input_and_the_frames_made_so_far(model_dir, tmp_path):
    from arvid.video import read_video, write_video

    clip = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 1), dtype=np.uint8)
    write_video(tmp_path / "in.npy", clip)
    before = (tmp_path / "in.npy").read_bytes()
    returncode, lines, _, out = stop_while_generating(model_dir, tmp_path, signal.SIGINT,
                                                      ("extend", str(tmp_path / "in.npy")))
    said = re.fullmatch(r"arvid: interrupted: .* holds the (\d+) frames made so far "
                        r"\(5 of the input, the rest generated\)", lines[-1])
    assert returncode == 130 and said, lines[-5:]
    assert read_video(out / "clip.mp4").frames.shape[0] == int(said.group(1)) > 5  # the input's 5, then new ones
    assert (tmp_path / "in.npy").read_bytes() == before


@pytest.fixture
def cli(capsys):
    def run(*args) -> tuple[int, str]:
        capsys.readouterr()
        with use_backend("pytorch"):
            code = main([str(a) for a in args])
        return code, capsys.readouterr().err
    return run


def interrupt_on_call(n: int):
    """A wrapper factory: call the real function n - 1 times, then raise KeyboardInterrupt (Ctrl-C)."""
    def wrap(real):
        calls = []

        def fake(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return fake
    return wrap


def clean_interrupt(code: int, err: str, frames: int) -> None:
    lines = [line.strip() for line in re.split(r"[\r\n]", err) if line.strip()]
    assert code == 130 and lines[-1].endswith(f"holds the {frames} frames made so far"), err
    assert "Traceback" not in err and all(line.startswith("generating:") for line in lines[:-1]), err


def test_ctrl_c_in_the_middle_of_an_npy_frame_keeps_the_whole_frames(model_dir, tmp_path, cli, monkeypatch):
    import arvid.video.io as vio

    old = tmp_path / "clip.npy"
    np.save(old, np.zeros((2, 16, 16, 1), np.uint8))
    real = vio.VideoWriter._write_one

    def half_then_ctrl_c(self, frame):
        if self.frames == 3:  # half of the fourth frame is on disk when Ctrl-C comes
            self._sink.write(np.ascontiguousarray(frame).tobytes()[: frame.nbytes // 2])
            raise KeyboardInterrupt
        return real(self, frame)
    monkeypatch.setattr(vio.VideoWriter, "_write_one", half_then_ctrl_c)
    clean_interrupt(*cli("generate", "--model", model_dir, "--frames", 6, "--out", old, "--device", "cpu",
                         "--overwrite"), 3)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npy"]
    kept = np.load(old)
    assert kept.shape == (3, 16, 16, 1) and old.stat().st_size == 128 + kept.nbytes  # no half frame at the end


def test_ctrl_c_while_writing_png_frames_keeps_the_whole_ones(model_dir, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", interrupt_on_call(3)(Image.Image.save))  # during the third frame
    clean_interrupt(*cli("generate", "--model", model_dir, "--frames", 5, "--out", tmp_path / "frames",
                         "--device", "cpu"), 2)
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_00000.png", "frame_00001.png"]
