"""Atomic writes and device selection."""

import os

import pytest
import torch

from arvid import ArvidError
from arvid.utils import atomic_path, atomic_write_text, resolve_device


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the second")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # and no temporary is left behind


def test_atomic_write_gives_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_folder_replaces_existing_folder(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_text("old")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "new.png").write_text("new")
    assert os.listdir(target) == ["new.png"]
    assert sorted(os.listdir(tmp_path)) == ["frames"]


def test_atomic_write_errors_name_the_problem(tmp_path):
    with pytest.raises(ArvidError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")
    with pytest.raises(ArvidError, match="is an existing folder"):
        atomic_write_text(tmp_path, "x")


def test_resolve_device():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ArvidError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ArvidError, match="no CUDA GPU"):
            resolve_device("cuda")
