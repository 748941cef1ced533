"""The bad-input corpus through the CLI: `arvid extend`, `tokenize`, `detokenize`, `generate --model`.

Every broken input must end the command with exit code 2 and one line on stderr that names the
file and the problem: no traceback, no progress bar, and no output file (nor temporary) left in the
output folder. The corpus is generated here. Most cases run `arvid.cli.main.main` in this process
(the same code path as the console script); a few run the real `python -m arvid` as subprocesses,
concurrently, to check the entry point end to end.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from arvid.cli.main import main
from arvid.kernels import use_backend
from arvid.tokenizer import Tokenizer, TokenizerConfig
from arvid.video import write_video
from corpus import tiny_model_dir, write_audio_only

H = W = 16  # the tiny model: 4x4 latent tokens, τ = 2, 25 codes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def codes_file(model_dir, tmp_path_factory) -> Path:
    """A valid code file (5 frames of 16x16 through the tiny tokenizer)."""
    folder = tmp_path_factory.mktemp("codes")
    np.save(folder / "clip.npy", clip(5))
    assert main(["tokenize", str(folder / "clip.npy"), "--model", str(model_dir / "tokenizer"),
                 "--out", str(folder / "codes.npz")]) == 0
    return folder / "codes.npz"


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):
        yield


def clip(T: int = 6, size: int = H, channels: int = 1) -> np.ndarray:
    t, y, x = np.mgrid[0:T, 0:size, 0:size]
    return np.repeat(((x * 9 + y * 5 + t * 7) % 256).astype(np.uint8)[..., None], channels, -1)  # (T, H, W, C)


# ------------------------------------------------------------------------------------- the corpus


def _bytes(name: str, data: bytes):
    def build(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return build


def _cut(name: str, fraction: float):
    def build(d: Path) -> Path:
        good = write_video(d / f"good{Path(name).suffix}", clip(8, 32, 3))
        data = good.read_bytes()
        good.unlink()
        (d / name).write_bytes(data[: int(len(data) * fraction)])
        return d / name
    return build


def _npy(name: str, array: np.ndarray):
    def build(d: Path) -> Path:
        np.save(d / name, array, allow_pickle=array.dtype == object)
        return d / name
    return build


def _npy_header(name: str, shape):
    def build(d: Path) -> Path:
        with open(d / name, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        return d / name
    return build


def _png_header(name: str, width: int, height: int):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _bytes(name, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _huge_gif(d: Path) -> Path:
    data = bytearray(write_video(d / "good.gif", clip(2, 16, 3)).read_bytes())
    (d / "good.gif").unlink()
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen 65535 x 65535
    (d / "huge.gif").write_bytes(bytes(data))
    return d / "huge.gif"


def _zero_frames(d: Path) -> Path:
    with av.open(str(d / "zero.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    return d / "zero.mp4"


def _audio_only(d: Path) -> Path:
    return write_audio_only(d / "speech.mp4")


def _png(name: str, array: np.ndarray):
    def build(d: Path) -> Path:
        Image.fromarray(array).save(d / name)
        return d / name
    return build


def _mixed_folder(d: Path) -> Path:
    (d / "frames").mkdir()
    Image.new("L", (16, 16)).save(d / "frames" / "a_0.png")
    Image.new("L", (16, 12)).save(d / "frames" / "a_1.png")
    return d / "frames"


def _folder(name: str):
    def build(d: Path) -> Path:
        (d / name).mkdir()
        return d / name
    return build


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.mp4")  # reading it would block for ever
    return d / "pipe.mp4"


NOISE = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
VIDEOS = {  # name: (builder, text the error line must contain besides the file name)
    "empty .mp4": (_bytes("empty.mp4", b""), "empty"),
    "random bytes .webm": (_bytes("noise.webm", NOISE), ""),
    "random bytes .avi": (_bytes("noise.avi", NOISE), ""),
    "text as .gif": (_bytes("notes.gif", b"hello, not a video\n" * 20), ""),
    "mp4 cut at 30%": (_cut("cut.mp4", 0.3), "truncated"),
    "webm cut at 60%": (_cut("cut.webm", 0.6), "truncated"),
    "gif cut at 90%": (_cut("cut.gif", 0.9), "truncated"),
    "mp4 with zero video frames": (_zero_frames, "zero video frames"),
    "audio-only mp4": (_audio_only, "only audio"),
    "npy with 2 channels": (_npy("two.npy", np.zeros((3, 16, 16, 2), np.uint8)), "2 channels"),
    "npy float32": (_npy("float.npy", np.zeros((3, 16, 16, 1), np.float32)), "dtype float32"),
    "npy rank 2": (_npy("flat.npy", np.zeros((16, 16), np.uint8)), "shape (16, 16)"),
    "npy zero frames": (_npy("none.npy", np.zeros((0, 16, 16, 1), np.uint8)), "zero frames"),
    "npy of pickled objects": (_npy("obj.npy", np.array([{"a": 1}, None], dtype=object)), "never unpickles"),
    "npy declaring 100000x100000": (_npy_header("huge.npy", (1, 100_000, 100_000, 3)), "100000x100000"),
    "npy declaring 10^9 frames": (_npy_header("long.npy", (10**9, 2, 2)), "1000000000 frames"),
    "png declaring 100000x100000": (_png_header("huge.png", 100_000, 100_000), "absurd"),
    "gif declaring 65535x65535": (_huge_gif, "65535x65535"),
    "16-bit png": (_png("deep.png", np.full((16, 16), 1000, np.uint16)), "not 8-bit"),
    "folder of mixed sizes": (_mixed_folder, "different sizes"),
    "folder without frames": (_folder("empty_dir"), "without .png/.jpg frames"),
    "folder named like a video": (_folder("dir.mp4"), "folder"),
    "missing path": (lambda d: d / "nope.mp4", "no such file"),
    "named pipe": (_fifo, "not a regular file"),
    "unsupported suffix": (_bytes("notes.txt", b"hello"), "unsupported file type"),
}


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err
        self.lines = [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys):
    def run(*args) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)
    return run


def assert_refused(r: Run, name: str, message: str, out_dir: Path, after_generating: bool = False) -> None:
    """Exit 2, one line naming `name` (and `message`), no traceback, nothing written.

    Problems found only when writing (`after_generating`) come after the progress bar; otherwise
    there must be none: the input was refused before any work.
    """
    assert r.code == 2, r.err
    lines = [line for line in r.lines if not (after_generating and line.startswith("generating"))]
    assert len(lines) == 1 and lines[0] == r.lines[-1] and lines[0].startswith("arvid: error: "), r.err
    assert name in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in r.err and (after_generating or "generating" not in r.err), r.err
    assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())  # no output, no temporary


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


@pytest.mark.parametrize("case", list(VIDEOS))
def test_extend_refuses_bad_video(model_dir, dirs, cli, case):
    build, message = VIDEOS[case]
    src, out = dirs
    path = build(src)
    r = cli("extend", path, "--frames", 2, "--out", out / "x.npy", "--model", model_dir, "--device", "cpu")
    assert_refused(r, path.name, message, out)


@pytest.mark.parametrize("case", list(VIDEOS))
def test_tokenize_refuses_bad_video(model_dir, dirs, cli, case):
    build, message = VIDEOS[case]
    src, out = dirs
    path = build(src)
    r = cli("tokenize", path, "--model", model_dir / "tokenizer", "--out", out / "codes.npz")
    assert_refused(r, path.name, message, out)


def test_odd_but_valid_videos(model_dir, dirs, cli):
    """A 1x1 clip and a 4-channel png: extend fits them to the model; tokenize says what to do."""
    src, out = dirs
    one = write_video(src / "one.npy", np.full((3, 1, 1, 1), 200, np.uint8))
    r = cli("extend", one, "--frames", 2, "--out", out / "x.npy", "--model", model_dir)
    assert r.code == 0 and np.load(out / "x.npy").shape == (5, H, W, 1), r.err
    r = cli("tokenize", one, "--model", model_dir / "tokenizer", "--out", out / "c.npz")
    assert r.code == 2 and len(r.lines) == 1 and "1x1" in r.lines[0] and "spatial factor 4" in r.lines[0], r.err
    assert not (out / "c.npz").exists()
    Image.new("RGBA", (16, 16), (10, 20, 30, 0)).save(src / "rgba.png")
    r = cli("extend", src / "rgba.png", "--frames", 2, "--out", out / "rgba.npy", "--model", model_dir)
    assert r.code == 0 and np.load(out / "rgba.npy").shape == (3, H, W, 1), r.err


def test_tokenize_size_error_names_the_file(model_dir, dirs, cli):
    src, out = dirs
    one = write_video(src / "one.npy", np.full((3, 1, 1, 1), 200, np.uint8))
    r = cli("tokenize", one, "--model", model_dir / "tokenizer", "--out", out / "c.npz")
    assert_refused(r, "one.npy", "frames of 1x1 do not fit this tokenizer: height and width must be multiples of its "
                   "spatial factor 4; resize them with --size, e.g. --size 4x4", out)
    r = cli("tokenize", one, "--model", model_dir / "tokenizer", "--out", out / "c.npz", "--size", "6x10")
    assert_refused(r, "one.npy", "frames of 6x10 (after --size 6x10) do not fit", out)


# ------------------------------------------------------------------------------------- token files


def _codes(name: str, change):
    """A copy of the valid code file with `change(arrays)` applied."""
    def build(d: Path, good: Path) -> Path:
        with np.load(good, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        np.savez_compressed(d / name, **arrays)
        return d / name
    return build


def _codes_bytes(name: str, data: bytes | None = None, fraction: float | None = None):
    def build(d: Path, good: Path) -> Path:
        (d / name).write_bytes(data if data is not None else good.read_bytes()[: int(good.stat().st_size * fraction)])
        return d / name
    return build


def _other_tokenizer(d: Path, good: Path) -> Path:
    from arvid.tokenizer.codes import load_codes, save_codes

    torch.manual_seed(5)
    other = Tokenizer(TokenizerConfig.preset("tiny"))  # same settings, other weights
    return save_codes(d / "theirs.npz", load_codes(good).codes, other, fps=8.0)


def _npy_named_npz(d: Path, good: Path) -> Path:
    np.save(d / "clip.npy", clip(5))
    return Path(shutil.move(d / "clip.npy", d / "v.npz"))


TOKENS = {  # name: (builder(folder, valid code file), text the error must contain)
    "missing file": (lambda d, g: d / "nope.npz", "no such code file"),
    "a folder": (lambda d, g: (d / "dir.npz").mkdir() or d / "dir.npz", "no such code file"),
    "empty file": (_codes_bytes("empty.npz", b""), "not an arvid code file"),
    "random bytes": (_codes_bytes("noise.npz", NOISE), "not an arvid code file"),
    "cut at 50%": (_codes_bytes("cut.npz", fraction=0.5), "not an arvid code file"),
    "missing codebook_size": (_codes("nokey.npz", lambda a: a.pop("codebook_size")), "missing ['codebook_size']"),
    "unknown key": (_codes("extra.npz", lambda a: a.update(payload=np.zeros(2))), "unknown ['payload']"),
    "pickled object codes": (_codes("obj.npz", lambda a: a.update(codes=np.array([{"x": 1}], dtype=object))),
                             "allow_pickle"),
    "codes out of range": (_codes("range.npz", lambda a: a.update(codes=a["codes"] + 25)), "outside [0, 25)"),
    "codes of rank 2": (_codes("rank.npz", lambda a: a.update(codes=a["codes"].reshape(3, 16))), "(t, h, w)"),
    "float codes": (_codes("float.npz", lambda a: a.update(codes=a["codes"].astype(np.float32))), "(t, h, w)"),
    "string header": (_codes("hdr.npz", lambda a: a.update(frames=np.str_("five"))), "malformed header"),
    "format version 9": (_codes("v9.npz", lambda a: a.update(format_version=np.int64(9))), "format 9"),
    "codebook of 125": (_codes("cb.npz", lambda a: a.update(codebook_size=np.int64(125))), "125 codes"),
    "fps NaN": (_codes("fps.npz", lambda a: a.update(fps=np.float64("nan"))), "fps"),
    "made by another tokenizer": (_other_tokenizer, "other weights"),
    "a .npy video named .npz": (_npy_named_npz, "not a zip archive"),
    "codes with an empty frame": (_codes("flat.npz", lambda a: a.update(codes=a["codes"][:, :0])), "h >= 1, w >= 1"),
}


@pytest.mark.parametrize("case", list(TOKENS))
def test_detokenize_refuses_bad_token_file(model_dir, codes_file, dirs, cli, case):
    build, message = TOKENS[case]
    src, out = dirs
    path = build(src, codes_file)
    r = cli("detokenize", path, "--model", model_dir / "tokenizer", "--out", out / "x.npy")
    assert r.code == 2 and len(r.lines) == 1, r.err
    assert_refused(r, path.name if case != "fps NaN" else "fps", message, out)




def limited(gib: int = 2):
    """preexec_fn: cap the child's address space so a runaway allocation fails instead of taking the machine."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))


def test_detokenize_refuses_an_absurd_latent_grid(model_dir, codes_file, dirs):
    """A 33 KB code file of 1x4000x4000 zeros decodes to a 16000x16000 clip: refused from the header
    (ReadLimits.max_pixels), before the tokenizer is even loaded."""
    src, out = dirs
    path = _codes("grid.npz", lambda a: a.update(codes=np.zeros((1, 4000, 4000), np.uint16)))(src, codes_file)
    r = subprocess.run([sys.executable, "-m", "arvid", "detokenize", str(path), "--model", str(model_dir / "tokenizer"),
                        "--out", str(out / "x.npy")], capture_output=True, text=True, timeout=120, preexec_fn=limited())
    assert_refused(Run(r.returncode, r.stdout, r.stderr), path.name, "16000x16000 pixels, over the limit", out)


# ------------------------------------------------------------------------------------- outputs


def _commands(model_dir: Path, codes: Path, video: Path, out: Path) -> dict[str, list]:
    return {
        "generate": ["generate", "--frames", 2, "--out", out, "--model", model_dir],
        "extend": ["extend", video, "--frames", 2, "--out", out, "--model", model_dir],
        "tokenize": ["tokenize", video, "--model", model_dir / "tokenizer", "--out", out.with_suffix(".npz")],
        "detokenize": ["detokenize", codes, "--model", model_dir / "tokenizer", "--out", out],
    }


COMMANDS = ["generate", "extend", "tokenize", "detokenize"]
GENERATING = ("generate", "extend")  # these check --out before generating, but write only after it


@pytest.fixture
def video(dirs) -> Path:
    return write_video(dirs[0] / "clip.npy", clip(5))


@pytest.mark.parametrize("command", COMMANDS)
def test_output_in_a_missing_folder(model_dir, codes_file, video, tmp_path, cli, command):
    out = tmp_path / "out" / "missing" / "x.npy"
    r = cli(*_commands(model_dir, codes_file, video, out)[command])
    assert_refused(r, "missing", "does not exist", tmp_path / "out")


@pytest.mark.parametrize("command", COMMANDS)
def test_output_under_a_file(model_dir, codes_file, video, tmp_path, cli, command):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "x.npy"
    r = cli(*_commands(model_dir, codes_file, video, out)[command])
    assert_refused(r, "file.txt", "not a folder", tmp_path / "out")
    assert (tmp_path / "file.txt").read_text() == "x"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_over_a_folder_of_other_files_keeps_them(model_dir, codes_file, video, tmp_path, cli, command):
    folder = tmp_path / "out" / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("keep me")
    argv = _commands(model_dir, codes_file, video, folder)[command]
    argv[argv.index(folder.with_suffix(".npz")) if command == "tokenize" else argv.index(folder)] = folder
    r = cli(*argv)
    (folder / "thesis.txt").rename(tmp_path / "thesis.txt")
    assert_refused(r, "mine", "folder", folder)
    assert (tmp_path / "thesis.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_in_a_read_only_folder(model_dir, codes_file, video, tmp_path, cli, command, monkeypatch):
    locked = tmp_path / "out"
    locked.chmod(0o500)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root may write anyway: let os.access say what it would say
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK
                            else real(p, mode, **kw))
    try:
        r = cli(*_commands(model_dir, codes_file, video, locked / "x.npy")[command])
        assert_refused(r, "x.np", "not writable", locked)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("command", COMMANDS)
def test_disk_full_is_one_line(model_dir, codes_file, video, tmp_path, cli, command, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tempfile, "mkstemp", full)
    monkeypatch.setattr(tempfile, "mkdtemp", full)
    r = cli(*_commands(model_dir, codes_file, video, tmp_path / "out" / "x.npy")[command])
    assert_refused(r, "x.np", "No space left on device", tmp_path / "out", after_generating=command in GENERATING)


def test_unsupported_output_suffix_is_refused_and_writes_nothing(model_dir, codes_file, video, tmp_path, cli):
    for command in ("generate", "extend", "detokenize"):
        r = cli(*_commands(model_dir, codes_file, video, tmp_path / "out" / "x.mov")[command])
        assert_refused(r, "x.mov", "cannot write '.mov' files", tmp_path / "out")


@pytest.mark.parametrize("command", GENERATING)
@pytest.mark.parametrize("out, sheet, message", [
    ("file.txt/x.npy", None, "file.txt is not a folder"),
    ("x.mov", None, "cannot write '.mov' files"),
    ("mine", None, "mine: the folder exists and holds other files (thesis.txt, ...)"),
    ("x.npy", "sheet.jpg", "sheet.jpg: an image (a contact sheet) is written as PNG"),
    ("x.npy", "missing/sheet.png", "missing does not exist"),
])
def test_generate_and_extend_check_outputs_before_any_work(model_dir, tmp_path, cli, command, out, sheet, message):
    """--out and --sheet are checked before the model is loaded (extend: before its input is read, so
    a missing input is not what is reported) and long before anything is generated."""
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep me")
    argv = [command, *([tmp_path / "nope.mp4"] if command == "extend" else []), "--frames", 2, "--out", tmp_path / out,
            "--model", tmp_path / "no-model", *(["--sheet", tmp_path / sheet] if sheet else [])]
    r = cli(*argv)
    assert r.code == 2 and len(r.lines) == 1 and "generating" not in r.err, r.err
    assert message in r.lines[0] and str(tmp_path / (sheet or out)) in r.lines[0], r.lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "mine"]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.txt"]


# ------------------------------------------------------------------------------------- the real command


def test_real_command_subprocesses(model_dir, codes_file, tmp_path):
    """`python -m arvid` end to end, four bad inputs at once: exit 2, one line, nothing written."""
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    (bad / "generator" / "model.safetensors").write_bytes((bad / "generator" / "model.safetensors").read_bytes()[:500])
    cut = _cut("cut.mp4", 0.5)(tmp_path)
    noise = _bytes("noise.webm", NOISE)(tmp_path)
    codes = _codes_bytes("cut.npz", fraction=0.5)(tmp_path, codes_file)
    out = tmp_path / "out"
    out.mkdir()
    runs = {
        "model.safetensors": ["generate", "--frames", "2", "--out", out / "g.npy", "--model", bad],
        "cut.mp4": ["extend", cut, "--frames", "2", "--out", out / "e.npy", "--model", model_dir],
        "noise.webm": ["tokenize", noise, "--model", model_dir / "tokenizer", "--out", out / "t.npz"],
        "cut.npz": ["detokenize", codes, "--model", model_dir / "tokenizer", "--out", out / "d.npy"],
    }
    env = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    procs = {name: subprocess.Popen([sys.executable, "-m", "arvid", *map(str, argv)], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name, argv in runs.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, stderr
        assert len(lines) == 1 and lines[0].startswith("arvid: error: ") and name in lines[0], stderr
        assert stdout == ""
    assert list(out.iterdir()) == []
