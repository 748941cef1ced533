"""Ctrl-C during `arvid generate`: exit 130, one clean line, no output file and no temporary left.

The first test interrupts a real `python -m arvid generate` subprocess once its progress bar has
started. The others interrupt the writing itself (in this process, by making the writer raise
KeyboardInterrupt halfway), which is the moment a partial file could appear: the temporary must go,
and a file already at the output path must be left exactly as it was.
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


def test_ctrl_c_during_generation(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "arvid", "generate", "--model", str(model_dir), "--frames", "100000",
                             "--out", str(out / "clip.mp4"), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_default_sigint)
    try:
        seen = read_until(proc, STARTED, timeout=120)
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode()
    lines = [line.strip() for line in re.split(r"[\r\n]", err) if line.strip()]
    assert proc.returncode == 130, err[-2000:]
    assert lines[-1] == "arvid: interrupted", err[-2000:]
    assert all(line.startswith("generating:") for line in lines[:-1]), err[-2000:]  # nothing but the bar before it
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert stdout == b""
    assert list(out.iterdir()) == []  # no output, no temporary


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


def clean_interrupt(code: int, err: str) -> None:
    lines = [line.strip() for line in re.split(r"[\r\n]", err) if line.strip()]
    assert code == 130 and lines[-1] == "arvid: interrupted", err
    assert "Traceback" not in err and all(line.startswith("generating:") for line in lines[:-1]), err


def test_ctrl_c_while_writing_npy_keeps_the_old_file(model_dir, tmp_path, cli, monkeypatch):
    old = tmp_path / "clip.npy"
    np.save(old, np.zeros((2, 16, 16, 1), np.uint8))
    before = old.read_bytes()
    real = np.lib.format.write_array

    def half_then_ctrl_c(f, array, *args, **kwargs):
        f.write(array.tobytes()[: array.nbytes // 2])  # half the frames are on disk when Ctrl-C comes
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", half_then_ctrl_c)
    clean_interrupt(*cli("generate", "--model", model_dir, "--frames", 4, "--out", old, "--device", "cpu"))
    monkeypatch.setattr(np.lib.format, "write_array", real)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.npy"] and old.read_bytes() == before


def test_ctrl_c_while_writing_png_frames_leaves_no_folder(model_dir, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", interrupt_on_call(3)(Image.Image.save))  # during the third frame
    clean_interrupt(*cli("generate", "--model", model_dir, "--frames", 5, "--out", tmp_path / "frames",
                         "--device", "cpu"))
    assert list(tmp_path.iterdir()) == []
