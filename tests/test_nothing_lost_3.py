"""Nothing lost, third pass (issue 33): reproducible video files, hostile code files, the API refusing what the
CLI refuses, and the remaining unclear answers.

Each case asserts the exit code, one `arvid: error:` line (no traceback) for a refusal through the CLI, an
`ArvidError` through the API, the user's files unchanged, and no temporary left.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from arvid.cli.main import main
from arvid.errors import ArvidError
from arvid.kernels import use_backend
from corpus import tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(autouse=True)
def pytorch_attention():
    with use_backend("pytorch"):
        yield


def run(capsys, *argv) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not line.startswith("generating")]
    return code, lines


def refused(capsys, *argv, match: str) -> str:
    code, lines = run(capsys, *argv)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("arvid") and "error:" in lines[0] and "Traceback" not in lines[0], lines
    assert match in lines[0], lines[0]
    return lines[0]


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if re.search(r"\.(tmp|old)(\.|$)", p.name)], list(folder.rglob("*"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- reproducible files


def _gray_clip(size: int = 64, frames: int = 13) -> np.ndarray:
    """Gray blocks that move: the kind of clip arvid makes (64x64, one channel)."""
    blocks = np.random.default_rng(11).integers(0, 256, (frames, 8, 8), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, size // 8, 1), size // 8, 2)[..., None]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_the_same_frames_give_the_same_file_whatever_ran_before(tmp_path, suffix):
    from arvid.video import write_video

    clip, hashes = _gray_clip(), set()
    for i in range(32):  # memory in other states between the writes, as while a model generates
        churn = [np.random.default_rng(i).integers(0, 256, n, dtype=np.uint8).tobytes()
                 for n in (4096, 8192, 65536, 12288, 1 << 20, 300 + 997 * i)]
        del churn
        write_video(tmp_path / f"{i}{suffix}", clip, fps=8)
        hashes.add(digest(tmp_path / f"{i}{suffix}"))
    assert len(hashes) == 1


def test_the_same_seed_gives_the_same_mp4(model_dir, tmp_path, capsys):
    for name in ("a.mp4", "b.mp4"):
        code, lines = run(capsys, "generate", "--model", model_dir, "--frames", 13, "--seed", 11, "--threads", 1,
                          "--device", "cpu", "--out", tmp_path / name)
        assert code == 0, lines
    assert digest(tmp_path / "a.mp4") == digest(tmp_path / "b.mp4")
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- hostile code files


@pytest.fixture(scope="module")
def codes_file(model_dir, tmp_path_factory) -> Path:
    """A valid code file: 5 frames of 16x16 through the tiny tokenizer."""
    folder = tmp_path_factory.mktemp("codes")
    t, y, x = np.mgrid[0:5, 0:16, 0:16]
    np.save(folder / "clip.npy", ((x * 9 + y * 5 + t * 7) % 256).astype(np.uint8)[..., None])
    assert main(["tokenize", str(folder / "clip.npy"), "--model", str(model_dir / "tokenizer"),
                 "--out", str(folder / "codes.npz")]) == 0
    return folder / "codes.npz"


def _bytes_read(monkeypatch) -> list[int]:
    """Count what is decompressed from any zip member from now on."""
    import zipfile

    read, original = [0], zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = original(self, n)
        read[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    return read


@pytest.mark.parametrize("member", ["payload", "fps"])
def test_a_zip_bomb_in_a_code_file_is_refused_before_its_members_are_read(model_dir, codes_file, tmp_path, capsys,
                                                                          monkeypatch, member):
    """Three zero-filled members of 64 MiB (a few KB on disk): an unknown name, or a known one far over its size."""
    import zipfile

    bomb = tmp_path / "bomb.npz"
    names = [f"payload{i}.npy" for i in range(3)] if member == "payload" else [f"{member}.npy"]
    with zipfile.ZipFile(codes_file) as good, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in good.infolist():
            if info.filename not in names:
                zf.writestr(info, good.read(info))
        for name in names:
            with zf.open(name, "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (64 << 20,)})
                for _ in range(64):
                    f.write(bytes(1 << 20))
    read = _bytes_read(monkeypatch)
    refused(capsys, "detokenize", bomb, "--model", model_dir / "tokenizer", "--out", tmp_path / "o.npy",
            match="not an arvid code file")
    assert read[0] < 1 << 20, f"{read[0] >> 20} MiB decompressed before the refusal"
    assert not (tmp_path / "o.npy").exists()
    no_temporaries(tmp_path)
