"""The token file reader (`load_codes`) on mutated valid .npz files: valid codes or ArvidError, nothing else.

A valid file is written by `save_codes` from a tiny tokenizer; hypothesis then mutates it two ways:
bytes (flip, truncate, insert, overwrite; on the compressed and on a stored zip) and structure
(missing and unknown keys, wrong dtypes and ranks, codes out of range, a pickled object array).
Every call runs under an alarm, so a hang fails the test instead of stalling CI. The examples are
derandomized so CI is stable; the reader bugs that random mutation found before b9f3f81 (about one
byte mutation in eight of the compressed file: corrupt deflate data, unsupported zip methods) and
the exact cases that showed the others are kept as regression tests in `REGRESSIONS`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import re
import signal
import struct
import zipfile
from datetime import timedelta

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arvid.errors import ArvidError
from corpus import MUTATION, mutate
from arvid.tokenizer import Tokenizer, TokenizerConfig
from arvid.tokenizer.codes import CodesFile, load_codes, save_codes
from arvid.video import ReadLimits

HANG_SECONDS = 10
FUZZ = settings(max_examples=30, deadline=timedelta(seconds=5), derandomize=True, database=None,
                report_multiple_bugs=False, suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fail with TimeoutError if the body runs longer than `seconds` (SIGALRM; main thread only)."""
    def alarm(*_):
        raise TimeoutError(f"load_codes ran over {seconds} s: it hangs")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def valid_or_arvid_error(path) -> CodesFile | ArvidError:
    """The property: load_codes returns codes that are safe to decode, or ArvidError naming the file."""
    try:
        with no_hang():
            f = load_codes(path)
    except ArvidError as e:
        assert path.name in str(e), str(e)
        assert "\n" not in str(e), str(e)  # one line on the CLI
        return e
    assert isinstance(f, CodesFile)
    assert f.codes.dtype == np.int64 and f.codes.ndim == 3
    assert min(f.codes.shape) >= 1, f"accepted codes of shape {f.codes.shape}: nothing to decode"
    assert 0 <= f.codes.min() and f.codes.max() < f.codebook_size
    assert isinstance(f.config_fingerprint, str) and isinstance(f.weights_fingerprint, str)
    return f


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict:
    """The arrays of a valid code file and its bytes, compressed (as save_codes writes) and stored."""
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny")).eval()  # 25 codes
    folder = tmp_path_factory.mktemp("codes")
    codes = np.random.default_rng(0).integers(0, tok.codebook_size, size=(3, 4, 4))  # (t, h, w)
    path = save_codes(folder / "c.npz", codes, tok, fps=8.0)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    stored = io.BytesIO()
    np.savez(stored, **arrays)
    assert load_codes(path).codes.tolist() == codes.tolist()
    return {"arrays": arrays, "compressed": path.read_bytes(), "stored": stored.getvalue(),
            "codebook": tok.codebook_size, "tok": tok}


def write_npz(path, arrays: dict, compressed: bool = True) -> None:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)  # object arrays are pickled by savez


# ------------------------------------------------------------------------------------- byte mutations

@FUZZ
@given(kind=st.sampled_from(["compressed", "stored"]), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_bytes_give_valid_codes_or_arvid_error(tmp_path, valid, kind, mutations):
    path = tmp_path / "mutated.npz"
    path.write_bytes(mutate(valid[kind], mutations))
    valid_or_arvid_error(path)


# ------------------------------------------------------------------------------------- structure

_dtypes = st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64, np.float32,
                           np.float64, np.complex64, np.bool_, "U4", "S4", object])


@st.composite
def arrays(draw) -> np.ndarray:
    """Small arrays of any listed dtype and rank 0-4, values anywhere (negative, huge, non-finite)."""
    dtype = np.dtype(draw(_dtypes))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    n = int(np.prod(shape))
    values = draw(st.lists(st.one_of(st.integers(-2**40, 2**40), st.integers(0, 40),
                                     st.sampled_from([float("nan"), float("inf"), -1.5, 0.5])), min_size=n, max_size=n))
    if dtype == object:
        return np.array(values + [{"pickled": True}], dtype=object)[:n].reshape(shape)
    with np.errstate(all="ignore"):
        flat = np.array([str(v) for v in values]) if dtype.kind in "US" else np.array(values, dtype=np.float64)
        if dtype.kind in "iub":
            flat = np.nan_to_num(flat, posinf=2**40, neginf=-2**40)
        return flat.astype(dtype).reshape(shape)


_edit = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(["codes", "codebook_size", "fps", "config_fingerprint", "frames",
                                                "format_version", "weights_fingerprint"])),
    st.tuples(st.just("set"), st.sampled_from(["codes", "codebook_size", "fps", "config_fingerprint", "frames",
                                               "format_version", "height", "temporal_factor"]), arrays()),
    st.tuples(st.just("add"), st.sampled_from(["extra", "codes2", "__reduce__"]), arrays()),
    st.tuples(st.just("codes"), st.sampled_from(["out of range", "negative", "rank 2", "rank 4", "float",
                                                 "zero frames"])),
)


def edit(arrays_in: dict, edits, codebook: int) -> dict:
    out = dict(arrays_in)
    codes = out["codes"]
    for op, key, *value in edits:
        if op == "drop":
            out.pop(key, None)
        elif op in ("set", "add"):
            out[key] = value[0]
        else:
            out["codes"] = {
                "out of range": codes.astype(np.int64) + codebook, "negative": codes.astype(np.int64) - codebook,
                "rank 2": codes.reshape(codes.shape[0], -1), "rank 4": codes[None],
                "float": codes.astype(np.float32), "zero frames": codes[:0],
            }[key]
    return out


@FUZZ
@given(edits=st.lists(_edit, min_size=1, max_size=3), compressed=st.booleans())
def test_edited_arrays_give_valid_codes_or_arvid_error(tmp_path, valid, edits, compressed):
    path = tmp_path / "edited.npz"
    write_npz(path, edit(valid["arrays"], edits, valid["codebook"]), compressed)
    valid_or_arvid_error(path)


# ------------------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize("case, match", [
    ("codes out of range", "outside [0, 25)"),
    ("negative codes", "outside [0, 25)"),
    ("codes rank 2", "codes must be integers (t, h, w)"),
    ("codes float", "codes must be integers (t, h, w)"),
    ("codes zero frames", "t >= 1"),
    ("missing key", "missing ['codebook_size']"),
    ("unknown key", "unknown ['payload']"),
    ("pickled object array", "allow_pickle"),
    ("string codebook_size", "malformed header values"),
    ("format version 2", "code file format 2"),
    ("empty file", "not an arvid code file"),
    ("random bytes", "not an arvid code file"),
    ("truncated half", "not an arvid code file"),
    ("a folder", "no such code file"),
    ("missing", "no such code file"),
])
def test_each_bad_token_file_gets_its_message(tmp_path, valid, case, match):
    a = valid["arrays"]
    path = tmp_path / "bad.npz"
    edits = {
        "codes out of range": {"codes": np.full((2, 4, 4), 25, np.uint16)},
        "negative codes": {"codes": np.full((2, 4, 4), -1, np.int32)},
        "codes rank 2": {"codes": a["codes"].reshape(3, 16)},
        "codes float": {"codes": a["codes"].astype(np.float64)},
        "codes zero frames": {"codes": a["codes"][:0]},
        "unknown key": {"payload": np.zeros(3)},
        "pickled object array": {"codes": np.array([{"x": 1}, None], dtype=object)},
        "string codebook_size": {"codebook_size": np.str_("many")},
        "format version 2": {"format_version": np.int64(2)},
    }
    if case in edits:
        write_npz(path, {**a, **edits[case]})
    elif case == "missing key":
        write_npz(path, {k: v for k, v in a.items() if k != "codebook_size"})
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif case == "truncated half":
        path.write_bytes(valid["compressed"][: len(valid["compressed"]) // 2])
    elif case == "a folder":
        path.mkdir()
    result = valid_or_arvid_error(path)
    assert isinstance(result, ArvidError) and match in str(result), str(result)


def npy_bytes(shape, descr="<u2") -> bytes:
    """An .npy header declaring `shape` with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def member_data_offset(data: bytes, name: str) -> int:
    """Offset of a zip member's (compressed) data in `data`."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    start = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[start + 26:start + 30])
    return start + 30 + name_len + extra_len


def corrupt_deflate(data: bytes) -> bytes:
    i = member_data_offset(data, "codes.npy")
    return data[:i] + b"\xff" + data[i + 1:]  # block type 11: reserved, "invalid block type"


def unsupported_method(data: bytes) -> bytes:
    i = data.index(b"PK\x01\x02")  # the first central directory entry (codes.npy)
    return data[:i + 10] + struct.pack("<H", 99) + data[i + 12:]  # compression method 99: not one zipfile reads


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


# Found by this file and fixed in b9f3f81; each escaped load_codes as the exception named before that.
REGRESSIONS = {  # name: (how to build the file from the valid one, text of the ArvidError now)
    "a .npy renamed to .npz (was TypeError)": (lambda v: npy_bytes((2, 4, 4)) + bytes(64), "not a zip archive"),
    "codes.npy declaring 10^18 entries, no data (was MemoryError)": (
        lambda v: _zip({"codes.npy": npy_bytes((10**6,) * 3)}), "declares shape (1000000, 1000000, 1000000)"),
    "corrupt deflate stream in codes.npy (was zlib.error)": (lambda v: corrupt_deflate(v["compressed"]), "error"),
    "zip member with compression method 99 (was NotImplementedError)": (
        lambda v: unsupported_method(v["compressed"]), "NotImplementedError"),
    "codes with an empty frame (3, 0, 4) (was accepted)": (
        lambda v: _npz({**v["arrays"], "codes": v["arrays"]["codes"][:, :0]}), "h >= 1, w >= 1"),
    "a member outside the format": (lambda v: _zip({"evil.py": b"import os"}),
                                    "unexpected member 'evil.py'"),
}


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_reader_regressions(tmp_path, valid, case):
    build, match = REGRESSIONS[case]
    path = tmp_path / "bad.npz"
    path.write_bytes(build(valid))
    result = valid_or_arvid_error(path)
    assert isinstance(result, ArvidError) and match in str(result), str(result)


# ------------------------------------------------------------------------------------- what the codes decode to


def test_the_decoded_clip_is_bounded_by_configurable_limits(tmp_path, valid):
    """The valid file is 3 latent frames of 4x4: 5 frames of 16x16 through the tiny tokenizer (τ 2, s 4)."""
    path = tmp_path / "c.npz"
    path.write_bytes(valid["compressed"])
    assert load_codes(path, limits=ReadLimits(max_frames=5, max_pixels=256, max_bytes=5 * 256)).codes.shape == (3, 4, 4)
    with pytest.raises(ArvidError, match=r"c.npz: declares 5 frames, over the limit of 4 \(ReadLimits.max_frames\)"):
        load_codes(path, limits=ReadLimits(max_frames=4))
    with pytest.raises(ArvidError, match=r"c.npz: declares frames of 16x16 pixels, over the limit of 255 pixels"):
        load_codes(path, limits=ReadLimits(max_pixels=255))
    with pytest.raises(ArvidError, match=r"ReadLimits.max_bytes"):
        load_codes(path, limits=ReadLimits(max_bytes=5 * 256 - 1))


@pytest.mark.parametrize("change, match", [
    ({"frames": np.int64(9)}, "the header says 9 frames of 16x16, but its codes (3, 4, 4) decode to 5 frames of 16x16"),
    ({"height": np.int64(16000)}, "the header says 5 frames of 16x16000"),
    ({"spatial_factor": np.int64(0)}, "malformed header values (temporal factor 2, spatial factor 0, channels 1)"),
    ({"temporal_factor": np.int64(2**40)}, "malformed header values"),
    ({"channels": np.int64(4)}, "malformed header values"),
])
def test_a_header_that_disagrees_with_its_codes_is_refused(tmp_path, valid, change, match):
    path = tmp_path / "edited.npz"
    write_npz(path, {**valid["arrays"], **change})
    with pytest.raises(ArvidError, match=re.escape(match)) as e:
        load_codes(path)
    assert str(e.value).startswith(str(path))


def test_header_factors_must_be_the_tokenizers(tmp_path, valid):
    """A header edited consistently (τ 1: 3 frames) loads, but the tokenizer that made the codes says no."""
    path = tmp_path / "tau1.npz"
    write_npz(path, {**valid["arrays"], "temporal_factor": np.int64(1), "frames": np.int64(3)})
    f = load_codes(path)
    with pytest.raises(ArvidError, match=r"tau1.npz: the header says temporal factor 1, spatial factor 4, 1 channels, "
                                         r"the tokenizer that made it has 2, 4, 1"):
        f.check(valid["tok"])
    (tmp_path / "ok.npz").write_bytes(valid["compressed"])
    load_codes(tmp_path / "ok.npz").check(valid["tok"])  # the file as written passes


def test_save_codes_write_failure_is_one_error_and_leaves_nothing(tmp_path, valid, monkeypatch):
    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez_compressed", disk_full)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArvidError, match=r"out/c.npz: cannot write the code file \(OSError: \[Errno 28\] No space "
                                         r"left on device\); free some space or choose another folder"):
        save_codes(out / "c.npz", valid["arrays"]["codes"], valid["tok"], fps=8.0)
    assert list(out.iterdir()) == []
