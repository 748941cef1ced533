"""Bad input for the video reader and writer: every broken file gets an ArvidError naming it.

The corpus is generated here (nothing downloaded): empty files, random bytes with video suffixes,
truncated mp4/webm/gif/avi at several cut points, containers with zero video frames, audio-only
files, 2- and 4-channel and 16-bit images, 1x1 clips, absurd declared sizes, limits exceeded,
folders of mixed sizes, .npy files of the wrong dtype or rank, missing paths, folders given as
files, and outputs in folders that are missing or not writable. A hypothesis test mutates valid
files and checks that the reader returns a valid Video or raises ArvidError, nothing else.
"""

from __future__ import annotations

import os
import struct
import zlib
from datetime import timedelta
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import arvid.video.io as vio
from arvid.errors import ArvidError
from corpus import MUTATION, mutate, write_audio_only
from arvid.video import ReadLimits, Video, read_video, write_video


def clip(T: int = 6, H: int = 16, W: int = 24) -> np.ndarray:
    """Gradients moving right: (T, H, W, 3) uint8."""
    t, y, x = np.mgrid[0:T, 0:H, 0:W]
    return np.stack([x * 9 + t * 5, y * 12, (x + y) * 5], -1).astype(np.uint8)


def refused(path, match: str | None = None, **kwargs) -> ArvidError:
    """read_video(path) must raise ArvidError naming the file (and matching `match`)."""
    with pytest.raises(ArvidError) as info:
        read_video(path, **kwargs)
    message = str(info.value)
    assert os.path.basename(os.fspath(path).rstrip("/")) in message, message
    if match:
        assert match.lower() in message.lower(), message
    return info.value


def png_header(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height RGB and holds no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def npy_header(path, shape, dtype="|u1") -> None:
    """A .npy file whose header declares `shape` and holds no data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})


# --------------------------------------------------------------------------------- not a video


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv", ".avi", ".gif", ".npy", ".png"])
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    refused(tmp_path / f"empty{suffix}", "empty")


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv", ".avi", ".gif", ".npy", ".jpg"])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes(tmp_path, suffix, seed):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    refused(path)


def test_text_file_with_video_suffix_and_unknown_suffix(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello, not a video\n" * 20)
    refused(tmp_path / "notes.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    refused(tmp_path / "notes.txt", "unsupported file type")


# --------------------------------------------------------------------------------- truncated


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
@pytest.mark.parametrize("cut", [0.05, 0.3, 0.6, 0.9, -1])
def test_truncated(tmp_path, suffix, cut):
    good = write_video(tmp_path / f"good{suffix}", clip(T=8))
    data = good.read_bytes()
    n = len(data) - 1 if cut == -1 else int(len(data) * cut)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[:n])
    refused(path, "truncated")


@pytest.mark.parametrize("cut", [0.3, 0.9, -1])
def test_truncated_avi(tmp_path, cut):
    path = tmp_path / "good.avi"
    _encode(path, "mpeg4", clip(T=8))
    data = path.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) - 1 if cut == -1 else int(len(data) * cut)])
    refused(tmp_path / "cut.avi", "truncated")


def test_truncated_png_frame_in_folder(tmp_path):
    write_video(tmp_path / "frames", clip(T=3))
    frame = tmp_path / "frames" / "frame_00001.png"
    frame.write_bytes(frame.read_bytes()[:60])
    refused(tmp_path / "frames", "frame_00001.png")


def _encode(path, codec: str, frames: np.ndarray, start_only: bool = False) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if start_only:
            container.start_encoding()
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------------- no video frames


@pytest.mark.parametrize("suffix, codec", [(".avi", "mpeg4"), (".mp4", "libx264"), (".mkv", "libx264")])
def test_container_with_zero_video_frames(tmp_path, suffix, codec):
    path = tmp_path / f"zero{suffix}"
    _encode(path, codec, clip(T=0), start_only=True)
    error = refused(path)
    if suffix != ".mkv":  # FFmpeg cannot open an mkv without clusters at all: reported as corrupt
        assert "zero video frames" in str(error)


def test_audio_only(tmp_path):
    path = write_audio_only(tmp_path / "speech.mp4", frames=8)
    refused(path, "only audio")


# --------------------------------------------------------------------------------- channels and tiny


@pytest.mark.parametrize("channels", [2, 4])
def test_npy_with_2_or_4_channels_is_refused(tmp_path, channels):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4, channels), np.uint8))
    refused(tmp_path / "x.npy", f"{channels} channels")


@pytest.mark.parametrize("mode, channels", [("LA", 1), ("RGBA", 3)])
def test_images_with_2_or_4_channels_drop_alpha(tmp_path, mode, channels):
    Image.new(mode, (5, 4)).save(tmp_path / "frame.png")
    assert read_video(tmp_path / "frame.png").frames.shape == (1, 4, 5, channels)


def test_16_bit_image_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "deep.png")
    refused(tmp_path / "deep.png", "not 8-bit")


@pytest.mark.parametrize("name", ["one.npy", "one", "one.webm", "one.gif"])
def test_1x1_video_works_where_the_format_allows(tmp_path, name):
    frames = np.full((3, 1, 1, 3), 200, np.uint8)
    video = read_video(write_video(tmp_path / name, frames))
    assert video.frames.shape == (3, 1, 1, 3)
    assert np.abs(video.frames.astype(int) - 200).max() <= 3


def test_1x1_mp4_is_refused_on_write(tmp_path):
    with pytest.raises(ArvidError, match=r"one\.mp4.*even"):
        write_video(tmp_path / "one.mp4", np.zeros((3, 1, 1, 3), np.uint8))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------- absurd sizes, limits


@pytest.mark.parametrize("shape, match", [
    ((1, 100_000, 100_000, 3), "100000x100000 pixels"),
    ((10**9, 2, 2), "1000000000 frames"),
    ((50_000, 512, 512, 3), "GiB"),
])
def test_npy_absurd_declared_size(tmp_path, shape, match):
    npy_header(tmp_path / "huge.npy", shape)  # no data: refused from the header, before reading
    refused(tmp_path / "huge.npy", match)


def test_png_absurd_declared_size(tmp_path):
    png_header(tmp_path / "huge.png", 100_000, 100_000)
    refused(tmp_path / "huge.png", "absurd")
    png_header(tmp_path / "big.png", 5000, 5000)
    refused(tmp_path / "big.png", "5000x5000 pixels")


def test_gif_absurd_declared_size(tmp_path):
    data = bytearray(write_video(tmp_path / "good.gif", clip(T=2)).read_bytes())
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen 65535 x 65535
    (tmp_path / "huge.gif").write_bytes(bytes(data))
    refused(tmp_path / "huge.gif", "65535x65535")


@pytest.mark.parametrize("name", ["c.mp4", "c.webm", "c.gif", "c.npy", "c"])
def test_limits_are_checked_before_decoding(tmp_path, name):
    path = write_video(tmp_path / name, clip(T=8))
    refused(path, "declares 8 frames" if name not in ("c.webm",) else "frames", limits=ReadLimits(max_frames=3))
    refused(path, "max_pixels", limits=ReadLimits(max_pixels=16 * 24 - 1))
    refused(path, "max_bytes", limits=ReadLimits(max_bytes=8 * 16 * 24 * 3 - 1))
    assert len(read_video(path, limits=ReadLimits(max_frames=8, max_pixels=16 * 24, max_bytes=8 * 16 * 24 * 3))) == 8


def test_limits_must_be_positive():
    with pytest.raises(ArvidError, match="max_frames"):
        ReadLimits(max_frames=0)


def test_limits_are_checked_while_decoding(tmp_path, monkeypatch):
    path = write_video(tmp_path / "c.webm", clip(T=8))
    monkeypatch.setattr(vio, "_declared_frames", lambda *a: (None, None))  # a container that declares nothing
    refused(path, "has 4 frames", limits=ReadLimits(max_frames=3))


def test_header_declares_more_frames_than_decoded(tmp_path, monkeypatch):
    path = write_video(tmp_path / "c.mp4", clip(T=4))
    monkeypatch.setattr(vio, "_declared_frames", lambda *a: (9, None))
    refused(path, "declares 9 frames but only 4")


# --------------------------------------------------------------------------------- folders


def test_folder_of_mixed_sizes(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a_0.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "a_1.png")
    error = refused(tmp_path, "different sizes")
    assert "a_0.png" in str(error) and "a_1.png" in str(error)


def test_folder_without_frames_and_folder_named_like_a_video(tmp_path):
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "without .png/.jpg frames")
    (tmp_path / "clip.mp4").mkdir()
    refused(tmp_path / "clip.mp4", "folder")


# --------------------------------------------------------------------------------- .npy


@pytest.mark.parametrize("array, match", [
    (np.zeros((2, 4, 4, 3), np.float32), "dtype float32"),
    (np.zeros((2, 4, 4), np.int16), "dtype int16"),
    (np.zeros((2, 4, 4), bool), "dtype bool"),
    (np.zeros((4, 4), np.uint8), "shape (4, 4)"),
    (np.zeros((1, 2, 4, 4, 3), np.uint8), "shape (1, 2, 4, 4, 3)"),
    (np.zeros((0, 4, 4, 3), np.uint8), "zero frames"),
    (np.zeros((2, 0, 4), np.uint8), "empty frames"),
])
def test_npy_wrong_dtype_or_rank(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    refused(tmp_path / "bad.npy", match)


def test_npy_pickle_is_never_loaded(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    refused(tmp_path / "obj.npy", "never unpickles")


def test_npy_truncated_and_garbled_header(tmp_path):
    data = write_video(tmp_path / "good.npy", clip(T=3)).read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-10])
    refused(tmp_path / "cut.npy", "truncated")
    (tmp_path / "garbled.npy").write_bytes(data[:10] + b"{'descr': lambda: 1}" + data[30:])
    refused(tmp_path / "garbled.npy")


def test_fortran_order_npy_reads_right(tmp_path):
    frames = clip(T=3)
    np.save(tmp_path / "f.npy", np.asfortranarray(frames))
    np.testing.assert_array_equal(read_video(tmp_path / "f.npy").frames, frames)


# --------------------------------------------------------------------------------- paths


def test_missing_path_and_special_file(tmp_path):
    refused(tmp_path / "nope.mp4", "no such file")
    os.mkfifo(tmp_path / "pipe.mp4")  # reading a pipe would block forever
    refused(tmp_path / "pipe.mp4", "not a regular file")


def test_output_folder_missing_or_not_a_folder(tmp_path):
    for name in ["clip.mp4", "clip.gif", "clip.npy", "frames"]:
        with pytest.raises(ArvidError, match=f"missing.*{name}.*does not exist"):
            write_video(tmp_path / "missing" / name, clip(T=2))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ArvidError, match="clip.mp4"):
        write_video(tmp_path / "file.txt" / "clip.mp4", clip(T=2))
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_output_folder_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for name in ["clip.mp4", "frames"]:
            with pytest.raises(ArvidError, match=f"{name}.*not writable"):
                write_video(locked / name, clip(T=2))
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


# --------------------------------------------------------------------------------- mutated files


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    frames = clip(T=4, H=16, W=16)
    return {suffix: write_video(folder / f"v{suffix}", frames).read_bytes() for suffix in (".mp4", ".gif", ".npy", ".webm")}


@settings(max_examples=30, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".mp4", ".gif", ".npy", ".webm"]), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_files_give_a_video_or_arvid_error(tmp_path, valid_files, suffix, mutations):
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(mutate(valid_files[suffix], mutations))
    limits = ReadLimits(max_frames=64, max_pixels=256 * 256)
    try:
        video = read_video(path, limits=limits)
    except ArvidError as e:
        assert path.name in str(e)
        return
    assert isinstance(video, Video) and video.frames.dtype == np.uint8 and video.frames.ndim == 4
    assert 1 <= len(video) <= 64 and video.height * video.width <= 256 * 256 and video.channels in (1, 3)
    assert 0 < video.fps <= 1000
