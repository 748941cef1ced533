"""Video files in and out: uint8 frames (T, H, W, C), C in {1, 3}, and a frame rate.

Read (`read_video`), recognised by content, whatever the file is called:
    video files                           decoded with PyAV (FFmpeg): MP4/MOV, Matroska/WebM, AVI, GIF,
                                          MPEG program and transport streams (.mpg, .ts), MPEG-1/2
                                          video, FLV, Ogg, ASF/WMV, ... (`VIDEO_DEMUXERS`). The container
                                          is known from the file's signature (`file_kind`); a file
                                          without a known signature is offered to FFmpeg's own probe,
                                          limited to those containers and to local files (never a
                                          playlist, which names other files or URLs)
    a folder of .png/.jpg frames          in natural order (frame_2 before frame_10)
    a single .png/.jpg                    a one-frame clip
    .npy                                  uint8 (T, H, W) or (T, H, W, C) with C in {1, 3}
A file whose content is none of these is refused as "not a video PyAV can read".
Write (`write_video`), by suffix:
    .mp4   H.264 (libx264, crf 18): yuv420p, whose width and height must be even; gray clips as 4:0:0
           (mp4 and webm are written bit-exact: the same frames and settings give the same bytes)
    .webm  VP9 (libvpx-vp9, yuv420p, crf 32)
    .gif   a palette per frame: exact when a frame has at most 256 colours, else median-cut
           quantised; frame delays are whole centiseconds (at least 2), so the stored frame rate
           is 100 / round(100 / fps), at most 50
    .npy   the array as it is
    a path without a suffix, or ending in '/': a folder of frame_00000.png, frame_00001.png, ...
`check_output(path)` makes the checks `write_video` makes of the path (suffix, folder, permissions)
without writing, so a command can refuse a bad output before long work.

Channels. Reading keeps grayscale as C=1 where the source is grayscale (gray PNG/JPEG frames, gray
.npy arrays, gray-coded video streams) and gives RGB otherwise; `channels=1` or `3` converts
(gray = ITU-R 601 luma, the same weights as Pillow). Images with an alpha channel (RGBA, LA) have
the alpha dropped; palette and CMYK images become RGB; 16-bit and float images are refused. A .npy
array with 2 or 4 channels is refused: its channels have no declared meaning. Writing keeps gray
as gray in .png folders, .npy and .mp4 (H.264 4:0:0) and expands it to RGB for .webm and .gif, which
have no gray coding.

Frame rates. Videos carry theirs. A png folder written by arvid stores it in each frame's
`arvid:fps` text chunk; .npy files and other frame folders have none and read as 8.0 fps.

Safety. Every failure is an `ArvidError` naming the file and the problem; FFmpeg, Pillow and numpy
exceptions never escape `read_video`. Sizes are checked against `ReadLimits` from the headers before
anything is decoded, and again while decoding. Containers whose declared length runs past the end
of the file (mp4 boxes, Matroska segments, AVI RIFF chunks, a GIF without its trailer) are refused
as truncated. Writes are atomic (`arvid.utils.atomic_path`): a failure leaves no file behind and
an existing file at the target untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import struct
import tempfile
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image, PngImagePlugin

from arvid.errors import ArvidError
from arvid.utils.atomic import atomic_path, check_target, umask

DEFAULT_FPS = 8.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The FFmpeg demuxers arvid opens: video containers and MPEG video streams. Never a playlist or a list of files
# (hls, concat), an image or a text demuxer: FFmpeg's probe would otherwise pick them for untrusted bytes.
VIDEO_DEMUXERS = ("mp4", "mov", "matroska", "avi", "gif", "mpeg", "mpegts", "mpegvideo", "flv", "ogg", "asf", "nut",
                  "yuv4mpegpipe", "ivf", "mxf")
_LOCAL_ONLY = {"protocol_whitelist": "file"}  # FFmpeg reads the file itself, nothing it names
_FPS_KEY = "arvid:fps"
MAX_FPS = 1000.0
# Subsampled YUV is brought to 4:4:4 with a bicubic filter before RGB conversion: FFmpeg's direct
# yuv420p -> rgb24 path repeats chroma samples, which costs about 1.5 dB on small colourful clips.
_UPSAMPLE = {"yuv420p": "yuv444p", "yuv422p": "yuv444p", "yuvj420p": "yuvj444p", "yuvj422p": "yuvj444p"}


@dataclass
class Video:
    """A clip: `frames` uint8 (T, H, W, C) with C in {1, 3}, played at `fps` frames per second."""

    frames: np.ndarray  # (T, H, W, C) uint8
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] not in (1, 3):
            raise ArvidError(f"Video.frames must be a uint8 array (T, H, W, C) with C 1 or 3, got {_describe_array(f)}")
        self.fps = check_fps(self.fps, "Video.fps")

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    @property
    def channels(self) -> int:
        return self.frames.shape[3]


@dataclass(frozen=True)
class ReadLimits:
    """Bounds that protect memory when reading untrusted files, checked before and while decoding.

    max_frames: frames in the clip. max_pixels: H * W of one frame. max_bytes: T * H * W * C of the
    decoded clip (the size of the array `read_video` returns).
    """

    max_frames: int = 100_000
    max_pixels: int = 4096 * 4096
    max_bytes: int = 8 * 2**30

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_pixels", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ArvidError(f"ReadLimits.{name} must be a positive integer, got {value!r}")

    def check(self, path: Path, *, frames: int | None = None, height: int | None = None,
              width: int | None = None, channels: int = 3, declared: bool = False) -> None:
        """Raise ArvidError if the clip (as declared by a header, or as decoded so far) is too big."""
        how = "declares" if declared else "has"
        if frames is not None and frames > self.max_frames:
            raise ArvidError(f"{path}: {how} {frames} frames, over the limit of {self.max_frames} "
                             "(ReadLimits.max_frames); read a shorter clip or raise the limit")
        if height is None or width is None:
            return
        if height * width > self.max_pixels:
            raise ArvidError(f"{path}: {how} frames of {width}x{height} pixels, over the limit of "
                             f"{self.max_pixels} pixels per frame (ReadLimits.max_pixels); use a smaller clip "
                             "or raise the limit")
        if frames is not None and frames * height * width * channels > self.max_bytes:
            raise ArvidError(f"{path}: {how} {frames} frames of {width}x{height}x{channels}, "
                             f"{frames * height * width * channels / 2**30:.1f} GiB decoded, over the "
                             f"limit of {self.max_bytes / 2**30:.1f} GiB (ReadLimits.max_bytes); use a shorter or "
                             "smaller clip or raise the limit")


# ---------------------------------------------------------------------------------------- reading


def read_video(path: str | os.PathLike, *, limits: ReadLimits | None = None,
               channels: int | None = None) -> Video:
    """Read a video file, a folder of frames, an image or a .npy array into a `Video`.

    `channels=None` keeps grayscale sources gray (C=1) and gives RGB (C=3) otherwise; 1 or 3
    converts. Raises `ArvidError` naming the file for anything unreadable or over `limits`.
    """
    if channels not in (None, 1, 3):
        raise ArvidError(f"channels must be None, 1 or 3, got {channels!r}")
    limits = limits or ReadLimits()
    path = Path(path).expanduser()
    if not path.exists():
        raise ArvidError(f"{path}: no such file or folder")
    if path.is_dir():
        video = _read_folder(path, limits)
    elif not path.is_file():
        raise ArvidError(f"{path}: not a regular file (a device, pipe or socket); give a video file or a folder")
    elif path.stat().st_size == 0:
        raise ArvidError(f"{path}: the file is empty (0 bytes)")
    else:
        video = _read_file(path, limits, channels)
    return Video(_convert_channels(video.frames, channels), video.fps)


@dataclass
class FrameStream:
    """A clip read one frame at a time (`stream_video`): `count` frames (H, W, C) uint8 from `frames`, at `fps`."""

    frames: Iterator[np.ndarray]
    count: int
    fps: float = DEFAULT_FPS


def stream_video(path: str | os.PathLike, *, limits: ReadLimits | None = None,
                 channels: int | None = None) -> FrameStream:
    """`read_video`, one frame at a time: the same frames, checks and errors, but a video file is decoded twice
    (once to check and count it, then as the frames are taken), so memory does not grow with its length. Other
    inputs (frame folders, images, .npy) are read whole, then given one frame at a time."""
    if channels not in (None, 1, 3):
        raise ArvidError(f"channels must be None, 1 or 3, got {channels!r}")
    limits = limits or ReadLimits()
    where = Path(path).expanduser()
    demuxer = _demuxer(where) if where.is_file() and where.stat().st_size else None
    if demuxer is None:
        video = read_video(path, limits=limits, channels=channels)
        return FrameStream(iter(video.frames), len(video), video.fps)
    fps, count, gray = _read_av(where, demuxer, limits, channels, keep=False)
    return FrameStream(_stream_av(where, demuxer, limits, channels, gray, count), count, fps)


def _stream_av(path: Path, demuxer: str, limits: ReadLimits, channels: int | None, gray: bool,
               count: int) -> Iterator[np.ndarray]:
    """The `count` frames of a checked video file, decoded one at a time as `_read_av` decodes them."""
    _check_container_length(path, demuxer)
    done = 0
    with _as_arvid_error(path), _open(path, demuxer) as container:
        for frame in _checked_frames(path, container, _video_stream(path, container), limits, 1 if gray else 3):
            if done == count:
                break
            yield _convert_channels(_frame_to_array(frame, gray)[None], channels)[0]
            done += 1
    if done != count:
        raise ArvidError(f"{path}: changed while being read: {count} frames at first, then {done}")


def _read_file(path: Path, limits: ReadLimits, channels: int | None) -> Video:
    kind = _kind_or_suffix(path)
    if kind == "npy":
        return _read_npy(path, limits)
    if kind == "image":
        return _read_images(path, [path], limits)
    if kind is not None:
        return _read_av(path, kind, limits, channels)
    raise ArvidError(f"{path} is not a video PyAV can read: its content is no video container FFmpeg knows, nor a "
                     "png/jpg image or a .npy array (unsupported file type); give a video file (mp4, mov, mkv, webm, avi, "
                     "mpg, ts, flv, gif, ...), a folder of frames or a .npy array")


# --- what a file is, by content


def file_kind(path: str | os.PathLike) -> str | None:
    """What the file's content is: "npy", "image" (PNG, JPEG), the FFmpeg demuxer of a video file (one of
    `VIDEO_DEMUXERS`), or None (none of these, or unreadable). Its name plays no part. The common containers are
    known by their signatures; other bytes are offered to FFmpeg's probe, limited to `VIDEO_DEMUXERS`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    return _signature_kind(head) or (_probed_demuxer(path) if head else None)


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file `read_video` reads as a clip of its own: a video file or a .npy array, by content
    (not an image, a text or anything else)."""
    path = Path(path)
    return path.is_file() and file_kind(path) not in (None, "image")


def _signature_kind(head: bytes) -> str | None:
    """The kind (see `file_kind`) that a file's first bytes announce, or None."""
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mp4"  # FFmpeg's one demuxer for MP4, MOV, 3GP
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"  # an MPEG program stream (.mpg, .vob)
    if head.startswith(b"\x00\x00\x01\xb3"):
        return "mpegvideo"  # an MPEG-1/2 video stream without a container
    if len(head) >= 3 * 188 and all(head[i] == 0x47 for i in (0, 188, 376)):
        return "mpegts"  # 188-byte transport packets (.ts)
    if len(head) >= 3 * 192 and all(head[i] == 0x47 for i in (4, 196, 388)):
        return "mpegts"  # 192-byte packets with a timecode (.m2ts)
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    return None


def _probed_demuxer(path: Path) -> str | None:
    """The demuxer FFmpeg's probe picks among `VIDEO_DEMUXERS` for a local file, or None."""
    try:
        with av.open(str(path), options={**_LOCAL_ONLY, "format_whitelist": ",".join(VIDEO_DEMUXERS)}) as container:
            names = container.format.name.split(",")
    except Exception:  # noqa: BLE001 - no demuxer wants it: not a video
        return None
    return next((d for d in VIDEO_DEMUXERS if d in names), None)


def _kind_or_suffix(path: Path) -> str | None:
    """The file's kind by content; when its content is no known kind, "npy" or "image" if its suffix says so (their
    readers say best what is wrong with a broken one), else None."""
    kind = file_kind(path)
    if kind is not None:
        return kind
    suffix = path.suffix.lower()
    return "npy" if suffix == ".npy" else "image" if suffix in IMAGE_SUFFIXES else None


def _demuxer(path: Path) -> str | None:
    kind = _kind_or_suffix(path)
    return None if kind in (None, "npy", "image") else kind


def _open(path: Path, demuxer: str):
    """The file opened with `demuxer`, reading nothing but the file."""
    return av.open(str(path), format=demuxer, options=_LOCAL_ONLY)


@contextlib.contextmanager
def _as_arvid_error(path: Path, doing: str = "cannot read it") -> Iterator[None]:
    """Turn any exception from a decoder (FFmpeg, Pillow, numpy) into an ArvidError naming `path`."""
    try:
        yield
    except ArvidError:
        raise
    except Image.DecompressionBombError as e:
        raise ArvidError(f"{path}: declares an absurd image size ({e})") from e
    except MemoryError as e:
        raise ArvidError(f"{path}: {doing}: out of memory; lower ReadLimits or read a smaller clip") from e
    except Exception as e:  # noqa: BLE001 - untrusted bytes can make any decoder raise anything
        raise ArvidError(f"{path}: {doing}: not a valid file of this type, or truncated or corrupt "
                         f"({type(e).__name__}: {_short(e)})") from e


# --- PyAV containers


def _read_av(path: Path, demuxer: str, limits: ReadLimits, channels: int | None, keep: bool = True):
    """The clip as a `Video`; with `keep=False`, only checked and counted, no frame held: (fps, frames, gray)."""
    _check_container_length(path, demuxer)
    with _as_arvid_error(path), _open(path, demuxer) as container:
        stream = _video_stream(path, container)
        fps = _stream_fps(stream)
        exact, estimate = _declared_frames(stream, container, fps)
        ctx = stream.codec_context
        height, width = (ctx.height, ctx.width) if ctx.width and ctx.height else _header_size(path, demuxer)
        limits.check(path, frames=exact or estimate, height=height, width=width, declared=True)
        gray = channels == 1 or (channels is None and (ctx.pix_fmt or "").startswith(("gray", "ya")))
        # H.264 gray (4:0:0, as arvid writes gray clips) decodes as 4:2:0 with neutral chroma: gray, if every
        # frame's chroma is neutral; else the clip is read again in colour
        neutral = channels is None and not gray and ctx.name == "h264" and ctx.pix_fmt in ("yuv420p", "yuvj420p")
        frames = _decode(path, container, stream, limits, gray or neutral, check_neutral=neutral, keep=keep)
    if frames is None:
        return _read_av(path, demuxer, limits, 3, keep)
    count = len(frames) if keep else frames
    if not count:
        raise ArvidError(f"{path}: has a video stream but zero video frames")
    if exact and count < exact:
        raise ArvidError(f"{path}: truncated or corrupt: the header declares {exact} frames but only "
                         f"{count} could be decoded")
    return Video(np.stack(frames), fps) if keep else (fps, count, gray or neutral)


def _video_stream(path: Path, container) -> "av.video.stream.VideoStream":
    if container.streams.video:
        return container.streams.video[0]
    if container.streams.audio:
        raise ArvidError(f"{path}: has only audio, no video stream")
    raise ArvidError(f"{path}: has no video stream (zero video frames)")


def _header_size(path: Path, demuxer: str) -> tuple[int | None, int | None]:
    """(H, W) from the file header where the demuxer leaves it to the decoder (GIF's logical screen)."""
    if demuxer != "gif":
        return None, None
    with open(path, "rb") as f:
        width, height = struct.unpack("<HH", f.read(10)[6:10])
    return height, width


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) <= MAX_FPS:
            return float(rate)
    return DEFAULT_FPS


def _declared_frames(stream, container, fps: float) -> tuple[int | None, int | None]:
    """(exact frame count from the container's index, or None; estimate from its duration, or None)."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), None
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        seconds = container.duration / av.time_base
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None, None
    return None, math.ceil(seconds * fps)


def _decode(path: Path, container, stream, limits: ReadLimits, gray: bool,
            check_neutral: bool = False, keep: bool = True) -> list[np.ndarray] | int | None:
    """Decoded frames (H, W, 1 or 3), or with `keep=False` only their count (each checked, none held); with
    `check_neutral`, None as soon as a frame's chroma is not neutral."""
    frames: list[np.ndarray] = []
    count = 0
    for frame in _checked_frames(path, container, stream, limits, 1 if gray else 3):
        if check_neutral and not _neutral_chroma(frame):
            return None
        if keep:
            frames.append(_frame_to_array(frame, gray))
        count += 1
    return frames if keep else count


def _checked_frames(path: Path, container, stream, limits: ReadLimits, channels: int) -> Iterator["av.VideoFrame"]:
    """The decoded frames, each checked against `limits`; a frame size that changes mid-video is refused."""
    first, count = None, 0
    for frame in container.decode(stream):
        size = (frame.height, frame.width)
        first = first or size
        if size != first:
            raise ArvidError(f"{path}: the frame size changes mid-video ({first[1]}x{first[0]} to "
                             f"{frame.width}x{frame.height} at frame {count})")
        limits.check(path, frames=count + 1, height=frame.height, width=frame.width, channels=channels)
        count += 1
        yield frame


def _neutral_chroma(frame: "av.VideoFrame") -> bool:
    """Whether both chroma planes of a 4:2:0 frame hold 128 everywhere (no colour at all)."""
    for plane in frame.planes[1:3]:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
        if not (rows == 128).all():
            return False
    return True


def _frame_to_array(frame: "av.VideoFrame", gray: bool) -> np.ndarray:
    if gray:
        return frame.to_ndarray(format="gray")[..., None]  # (H, W, 1)
    upsampled = _UPSAMPLE.get(frame.format.name)
    if upsampled:
        frame = frame.reformat(format=upsampled, interpolation="BICUBIC")
    return frame.to_ndarray(format="rgb24")  # (H, W, 3)


# --- container length checks (truncation shows as a declared length past the end of the file)


def _check_container_length(path: Path, demuxer: str) -> None:
    overrun = {"mp4": _mp4_overrun, "mov": _mp4_overrun, "matroska": _matroska_overrun, "avi": _riff_overrun,
               "gif": _gif_overrun}.get(demuxer)
    if overrun is None:  # streams without a declared length (MPEG, FLV, ...): a cut one just ends early
        return
    size = path.stat().st_size
    with _as_arvid_error(path), open(path, "rb") as f:
        problem = overrun(f, size)
    if problem:
        raise ArvidError(f"{path}: {problem}")


def _mp4_overrun(f, size: int) -> str | None:
    offset, boxes = 0, 0
    while offset < size and boxes < 10_000:
        f.seek(offset)
        head = f.read(16)
        if len(head) < 8:
            return f"truncated or corrupt: {size - offset} stray bytes after the last box at byte {offset}"
        length, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
        if not re.fullmatch(r"[\x20-\x7e\xa9]{4}", kind):  # box types are printable four-character codes
            return f"not a valid mp4 file or corrupt: no box header at byte {offset}"
        if length == 1:
            length = int.from_bytes(head[8:16], "big") if len(head) == 16 else 0
        elif length == 0:  # this box runs to the end of the file
            return None
        if length < 8:
            return f"not a valid mp4 file or corrupt: the box at byte {offset} has an impossible size {length}"
        if offset + length > size:
            return (f"truncated or corrupt: box '{kind}' at byte {offset} declares {length} bytes but the "
                    f"file ends at byte {size}")
        offset, boxes = offset + length, boxes + 1
    return None


def _read_vint(buf: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer at `pos`: (value, next pos, all value bits set = unknown)."""
    first = buf[pos]
    width = 8 - first.bit_length() + 1
    if first == 0 or pos + width > len(buf):
        raise ValueError("bad EBML integer")
    value = first if keep_marker else first & ((1 << (8 - width)) - 1)
    for b in buf[pos + 1:pos + width]:
        value = (value << 8) | b
    unknown = not keep_marker and value == (1 << (7 * width)) - 1
    return value, pos + width, unknown


def _matroska_overrun(f, size: int) -> str | None:
    head = f.read(4096)
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return "not a Matroska/WebM file (no EBML header)"
    _, pos, _ = _read_vint(head, 0, keep_marker=True)
    header_size, pos, _ = _read_vint(head, pos, keep_marker=False)
    pos += header_size
    if pos >= size:
        return f"truncated or corrupt: the file ends inside the EBML header, after {size} bytes"
    if pos >= len(head):  # an unusually long header: leave the judgement to FFmpeg
        return None
    element, pos, _ = _read_vint(head, pos, keep_marker=True)
    if element != 0x18538067:
        return "not a Matroska/WebM file or corrupt (no Segment after the EBML header)"
    segment, pos, unknown = _read_vint(head, pos, keep_marker=False)
    if not unknown and pos + segment > size:
        return f"truncated or corrupt: the Segment declares {pos + segment} bytes but the file ends at byte {size}"
    return None


def _riff_overrun(f, size: int) -> str | None:
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return "not an AVI file (no RIFF/AVI header)"
    declared = 8 + int.from_bytes(head[4:8], "little")
    if declared > size:
        return f"truncated or corrupt: the RIFF chunk declares {declared} bytes but the file ends at byte {size}"
    return None


def _gif_overrun(f, size: int) -> str | None:
    if f.read(6) not in (b"GIF87a", b"GIF89a"):
        return "not a GIF file (no GIF87a/GIF89a signature)"
    f.seek(max(0, size - 64))
    if not f.read().rstrip(b"\x00").endswith(b";"):
        return "truncated or corrupt: the GIF trailer is missing (the file was cut short)"
    return None


# --- frames as images


def _natural_key(p: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", p.name)]


def _read_folder(path: Path, limits: ReadLimits) -> Video:
    with _as_arvid_error(path, "cannot list the folder"):
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                 and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise ArvidError(f"{path}: is a folder without .png/.jpg frames; give a video file or a folder of frames")
    return _read_images(path, sorted(files, key=_natural_key), limits)


def _read_images(path: Path, files: list[Path], limits: ReadLimits) -> Video:
    limits.check(path, frames=len(files), declared=True)
    frames: list[np.ndarray] = []
    fps = None
    for f in files:
        with _as_arvid_error(f), warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                width, height = im.size
                limits.check(f, height=height, width=width, declared=True)
                if not frames:
                    limits.check(path, frames=len(files), height=height, width=width, declared=True)
                    fps = _png_fps(im)
                elif (height, width) != frames[0].shape[:2]:
                    raise ArvidError(f"{path}: frames have different sizes: {files[0].name} is "
                                     f"{frames[0].shape[1]}x{frames[0].shape[0]}, {f.name} is {width}x{height}; "
                                     "resize them to one size")
                frames.append(_image_to_array(f, im))
    if any(a.shape[2] == 3 for a in frames):  # a mix of gray and colour frames reads as colour
        frames = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in frames]
    return Video(np.stack(frames), fps or DEFAULT_FPS)


def _image_to_array(f: Path, im: Image.Image) -> np.ndarray:
    if im.mode in ("1", "L", "LA", "La"):
        return np.asarray(im.convert("L"))[..., None]  # (H, W, 1), alpha dropped
    if im.mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))  # (H, W, 3), alpha dropped
    raise ArvidError(f"{f}: image mode '{im.mode}' ({len(im.getbands())} channel(s), not 8-bit) is not "
                     "supported; save frames as 8-bit gray or RGB")


def _png_fps(im: Image.Image) -> float | None:
    try:
        fps = float(im.info.get(_FPS_KEY, "nan"))
    except (TypeError, ValueError):
        return None
    return fps if 0 < fps <= MAX_FPS else None


# --- .npy


def _read_npy(path: Path, limits: ReadLimits) -> Video:
    size = path.stat().st_size
    with _as_arvid_error(path, "cannot read it as a .npy array"), open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        frames_shape = _check_npy_header(path, shape, dtype)
        limits.check(path, frames=frames_shape[0], height=frames_shape[1], width=frames_shape[2],
                     channels=frames_shape[3], declared=True)
        count = math.prod(shape)
        if size - f.tell() < count:
            raise ArvidError(f"{path}: truncated: the header declares {count} bytes of data but the "
                             f"file holds {size - f.tell()}")
        data = np.frombuffer(f.read(count), dtype=np.uint8)
    frames = data.reshape(shape, order="F" if fortran else "C").reshape(frames_shape)
    return Video(np.ascontiguousarray(frames), DEFAULT_FPS)


def _check_npy_header(path: Path, shape: tuple, dtype: np.dtype) -> tuple[int, int, int, int]:
    """Validate a .npy header's dtype and shape; return the clip shape (T, H, W, C)."""
    if dtype.hasobject:
        raise ArvidError(f"{path}: holds Python objects (a pickle); arvid reads only uint8 arrays and never unpickles")
    if dtype != np.uint8:
        raise ArvidError(f"{path}: dtype {dtype} is not supported; save frames as uint8 in [0, 255] "
                         "(e.g. (x * 255).round().astype(np.uint8) for floats in [0, 1])")
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4:
        raise ArvidError(f"{path}: shape {tuple(shape)} is not a clip; expected (T, H, W) or (T, H, W, C)")
    if shape[3] not in (1, 3):
        raise ArvidError(f"{path}: {shape[3]} channels are not supported (shape {tuple(shape)}); "
                         "expected 1 (gray) or 3 (RGB), e.g. drop alpha with x[..., :3]")
    if shape[0] == 0:
        raise ArvidError(f"{path}: has zero frames (shape {tuple(shape)})")
    if shape[1] == 0 or shape[2] == 0:
        raise ArvidError(f"{path}: has empty frames (shape {tuple(shape)})")
    return tuple(int(s) for s in shape)


# --- channels


def _convert_channels(frames: np.ndarray, channels: int | None) -> np.ndarray:
    """(T, H, W, C) -> (T, H, W, channels); gray is ITU-R 601 luma with Pillow's rounding."""
    if channels is None or frames.shape[3] == channels:
        return frames
    if channels == 3:
        return np.repeat(frames, 3, axis=3)
    rgb = frames.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]


# ---------------------------------------------------------------------------------------- writing


def write_video(path: str | os.PathLike, frames: np.ndarray | Video, fps: float | None = None, *,
                crf: int | None = None) -> Path:
    """Write uint8 frames (T, H, W, C) or (T, H, W) to `path`, atomically; return the path written.

    The format follows the suffix (see the module docstring); a path without a suffix or ending in
    '/' is a folder of PNG frames. `fps` defaults to the Video's own, else 8.0. `crf` sets the
    quality of .mp4 (0-51, default 18) and .webm (0-63, default 32) and is ignored otherwise.
    """
    if fps is None:
        fps = frames.fps if isinstance(frames, Video) else DEFAULT_FPS
    with VideoWriter(path, fps, crf=crf) as writer:
        frames = _check_frames_to_write(writer.path, frames.frames if isinstance(frames, Video) else frames)
        writer.write(frames)
    return writer.path


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP (in the main thread, where Python handles them) until the block ends; they
    are delivered then, so the block runs whole."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class VideoWriter:
    """A video written a frame at a time: memory does not grow with its length.

        with VideoWriter("clip.mp4", fps=8) as out:    # or .webm, .gif, .npy, a png folder
            for frame in frames:                        # uint8 (H, W, C), or (n, H, W, C) at once
                out.write(frame)

    Frames go into a temporary file (or folder) beside the target, `.NAME.XXXX.tmp.SUFFIX`, which
    `close()` renames into place: readers see a complete video or none. Leaving the block normally
    closes it; an exception aborts it (the temporary is removed, the target untouched), except a
    KeyboardInterrupt (Ctrl-C, or SIGTERM as the CLI raises it), which closes it with the frames written
    so far: a valid, shorter video. A png folder replaces an existing folder only when that folder holds
    nothing but arvid's frame files (frame_NNNNN.png); a .npy file's header is written for the final frame
    count when it closes.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int | None = None):
        raw = os.fspath(path)
        self.path = Path(raw).expanduser()
        self.fps = check_fps(fps, f"fps for {self.path}")
        self.folder = _is_folder_target(raw, self.path)
        if not self.folder:
            _check_suffix(self.path)
        check_output(raw)
        self.suffix = "" if self.folder else self.path.suffix.lower()
        _check_stored_rate(self.path, self.suffix, self.fps)
        self.crf, self.frames, self.shape = crf, 0, None
        self._tmp: Path | None = None
        self._sink = None  # the open container or file
        self._stream = None

    # -- the block

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is None or issubclass(kind, KeyboardInterrupt):
            self.close()
        else:
            self.abort()

    # -- writing

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (H, W, C) or (H, W), or several (n, H, W, C), uint8."""
        frames = np.asarray(frames)
        if frames.ndim in (2, 3) and (frames.ndim == 2 or frames.shape[-1] in (1, 3) and frames.ndim == 3):
            frames = frames[None]
        frames = _check_frames_to_write(self.path, frames)
        if self.shape is None:
            self._open(frames.shape[1:])
        elif frames.shape[1:] != self.shape:
            raise ArvidError(f"{self.path}: frames of {frames.shape[1:]} after frames of {self.shape}: a video's "
                             "frames all have one size")
        with self._errors():
            for frame in frames:
                try:
                    with _signals_held():  # a stop lands between frames: an encoder never holds an uncounted one
                        self._write_one(frame)
                        self.frames += 1
                except BaseException:  # an error in the middle of a frame: the frames before it stay whole
                    self._drop_partial()
                    raise

    def close(self) -> Path | None:
        """Finish the file and rename it into place; the path, or None when no frame was written (nothing is
        left behind then)."""
        if self._tmp is None:
            return None
        try:
            with self._errors():
                self._finish()
                if self.folder:
                    _replace_folder(self._tmp, self.path)
                else:
                    if self.path.is_dir():
                        raise IsADirectoryError(f"{self.path} became a folder while the video was written")
                    os.chmod(self._tmp, 0o666 & ~umask())
                    os.replace(self._tmp, self.path)
                self._tmp = None  # in place: nothing left to remove
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Remove the temporary; the target stays as it was."""
        if self._sink is not None:
            with contextlib.suppress(Exception):
                self._sink.close()
            self._sink = None
        if self._tmp is not None:
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self._tmp.unlink()
            self._tmp = None

    # -- the formats

    def _open(self, shape: tuple[int, int, int]) -> None:
        height, width, channels = shape
        parent = self.path.parent
        # what the format refuses, before anything is created
        if self.suffix == ".mp4" and (height % 2 or width % 2) and channels != 1:
            raise ArvidError(f"{self.path}: H.264 (yuv420p) needs an even width and height, got "
                             f"{width}x{height}; crop or pad with arvid.video.fit_video, or write .webm, "
                             ".gif or png frames")
        if self.suffix in (".mp4", ".webm"):
            crf = _check_crf(self.path, self.crf, *((18, 51) if self.suffix == ".mp4" else (32, 63)))
        self.shape = shape
        with self._errors():
            if self.folder:
                _check_no_strangers(self.path)
                self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent))
                self._png_info = PngImagePlugin.PngInfo()
                self._png_info.add_text(_FPS_KEY, repr(self.fps))
                return
            fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{self.suffix}", dir=parent)
            os.close(fd)
            self._tmp = Path(name)
            if self.suffix == ".npy":
                self._sink = open(self._tmp, "wb")
                self._sink.write(_npy_header((0, *shape)))
                return
            if self.suffix == ".mp4":
                gray = channels == 1  # H.264 codes gray as 4:0:0 (luma only): it reads back gray, no chroma to lose
                codec, pix_fmt = "libx264", "gray" if gray else "yuv420p"
                # mbtree off: x264's macroblock-tree lookahead reads memory it never wrote on small frames (64x64),
                # so the same frames gave different files as the process's heap changed
                options = {"crf": crf, "preset": "medium", "x264-params": "mbtree=0"}
                fps = self.fps
            elif self.suffix == ".webm":
                codec, pix_fmt, fps = "libvpx-vp9", "yuv420p", self.fps
                options = {"crf": crf, "b": "0", "deadline": "good",
                           "cpu-used": "4", "row-mt": "1"}
            else:  # .gif: delays are whole centiseconds (players slow down delays under 2): one constant delay,
                # so the clip reads back at the rate it plays at; FFmpeg's frame-difference optimisations compare
                # palette indices, wrong when every frame has its own palette: off
                codec, pix_fmt, options = "gif", "pal8", {"gifflags": "0"}
                fps = 100 / min(max(2, round(100 / self.fps)), 65535)
            self._pix_fmt = pix_fmt
            # bitexact: no random Matroska segment id, no library versions: the file is a function of its frames
            self._sink = av.open(str(self._tmp), "w", format={".mp4": "mp4", ".webm": "webm", ".gif": "gif"}[self.suffix],
                                 options={"fflags": "+bitexact"})
            stream = self._sink.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            if pix_fmt == "yuv420p":  # tag what swscale's RGB -> YUV conversion produced: BT.601, limited range
                ctx = stream.codec_context
                ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 6, 6, 6, 1
            elif pix_fmt == "gray":  # the levels as they are: full range
                stream.codec_context.color_range = 2
            self._stream = stream

    def _write_one(self, frame: np.ndarray) -> None:
        if self.folder:
            image = Image.fromarray(frame[..., 0] if frame.shape[2] == 1 else frame)
            image.save(self._tmp / f"frame_{self.frames:05d}.png", pnginfo=self._png_info)
        elif self.suffix == ".npy":
            self._sink.write(np.ascontiguousarray(frame).tobytes())
        else:
            for packet in self._stream.encode(_av_frame(frame, self._pix_fmt)):
                self._sink.mux(packet)

    def _drop_partial(self) -> None:
        """Remove what a frame interrupted in the middle left (the frames before it stay)."""
        with contextlib.suppress(Exception):
            if self.folder:
                (self._tmp / f"frame_{self.frames:05d}.png").unlink(missing_ok=True)
            elif self.suffix == ".npy":
                self._sink.truncate(_NPY_HEADER_BYTES + self.frames * math.prod(self.shape))
                self._sink.seek(0, os.SEEK_END)

    def _finish(self) -> None:
        if self.suffix == ".npy":
            self._sink.seek(0)
            self._sink.write(_npy_header((self.frames, *self.shape)))
            self._sink.close()
        elif not self.folder:
            for packet in self._stream.encode():
                self._sink.mux(packet)
            self._sink.close()
        self._sink = None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise ArvidError(f"{self.path}: cannot write it ({type(e).__name__}: {_short(e)})") from e


_NPY_HEADER_BYTES = 128  # the .npy header, padded to this length, so the final shape fits where the first was


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy (version 1.0) header for uint8 `shape`, always _NPY_HEADER_BYTES long."""
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(int(n) for n in shape)})
    body = text.encode("latin1")
    pad = _NPY_HEADER_BYTES - 10 - len(body) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _NPY_HEADER_BYTES - 10) + body + b" " * pad + b"\n"


def _replace_folder(new: Path, path: Path) -> None:
    """Put the folder `new` at `path`. An existing folder there is moved aside under a fresh temporary name,
    then removed: it holds only arvid's frame files (checked when writing began, and again now)."""
    if path.exists():
        _check_no_strangers(path)
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old)  # onto an empty folder of a name no one else uses
        os.replace(new, path)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(new, path)
    os.chmod(path, 0o777 & ~umask())


def check_output(path: str | os.PathLike, *, image: bool = False) -> Path:
    """Raise ArvidError now for anything that makes `write_video(path, ...)` refuse `path` itself:
    an unsupported suffix, a folder that is missing, not a folder or not writable, an existing
    folder in place of a file, or a folder of other files in place of a png folder. Call it before
    long work (generating a clip), so a bad --out is found first; return the path as written.
    `image=True` checks a single .png image instead (a contact sheet)."""
    raw = os.fspath(path)
    path = Path(raw).expanduser()
    check_name(raw, path)
    _check_renamable(path)
    if image:
        if path.suffix.lower() != ".png":
            raise ArvidError(f"{path}: an image (a contact sheet) is written as PNG; give a path ending in .png")
        check_target(path)
    elif _is_folder_target(raw, path):
        check_target(path, is_dir=True)
        _check_no_strangers(path)
    else:
        _check_suffix(path)
        check_target(path)
    return path


def check_name(raw: str, path: Path) -> None:
    """An output must name something new or arvid's own: not empty, not '.' or '..' (a folder the user is in),
    and a name the file system can hold."""
    if not raw.strip():
        raise ArvidError("the output path is empty: give a file name such as clip.mp4")
    if path.name.lower() in _WRITERS:  # '.npy' is a hidden name without a suffix: it would become a png folder
        raise ArvidError(f"{raw!r} is only a suffix: give a file name such as clip{path.name.lower()}")
    if path.name in ("", ".", "..") or path.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise ArvidError(f"{raw!r} is the current folder or one above it: give a file name such as clip.mp4, or a new "
                         "folder for png frames")
    size = len(os.fsencode(path.name))
    if size + _TEMPORARY_EXTRA > 255:
        raise ArvidError(f"the output name is {size} bytes long; file systems hold at most 255, and arvid writes "
                         f"into a temporary name {_TEMPORARY_EXTRA} bytes longer first: give a name of at most "
                         f"{255 - _TEMPORARY_EXTRA} bytes, shorter than {path.name[:40]}...")


_TEMPORARY_EXTRA = 14  # `.NAME.XXXXXXXX.tmp` beside the output: what the temporary adds to its name


def _check_renamable(path: Path) -> None:
    """Refuse what the final rename could not replace as the user means, before any work: a symbolic link (the
    rename would replace the link, not what it points to) and a mount point (a Docker volume: EBUSY)."""
    if path.is_symlink():
        raise ArvidError(f"{path} is a symbolic link (to {os.readlink(path)}): arvid would replace the link, not "
                         "what it points to; give the real path, or a new name")
    if path.exists() and (os.path.ismount(path) or path.stat().st_dev != path.parent.stat().st_dev):
        raise ArvidError(f"{path} is a mount point (a mounted volume or file): it cannot be replaced; give a new name "
                         "inside it or beside it")


def _is_folder_target(raw: str, path: Path) -> bool:
    return raw.endswith(("/", os.sep)) or path.suffix == "" or (path.is_dir() and path.suffix not in _WRITERS)


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _WRITERS:
        raise ArvidError(f"{path}: cannot write '{path.suffix}' files; use .mp4, .webm, .gif, .npy or a "
                         "folder (a path without a suffix) for png frames")


_LOWEST_FPS = {".mp4": 1 / 1001, ".webm": 1 / 1001, ".gif": 100 / 65535}  # a frame every 1001 s; gif: 655.35 s


def _check_stored_rate(path: Path, suffix: str, fps: float) -> None:
    """ArvidError if a video file of this kind cannot store `fps` (it would play at another rate)."""
    lowest = _LOWEST_FPS.get(suffix)
    if lowest is not None and fps < lowest:
        raise ArvidError(f"{path}: {suffix} files store frame rates from {lowest:.4f} frames per second, got {fps:g}; "
                         "give a higher frame rate, or write .npy or png frames")


def check_fps(fps, what: str = "fps") -> float:
    """`fps` as a float, or ArvidError naming `what`: a finite frame rate in (0, MAX_FPS]."""
    try:
        value = float(fps)
    except (TypeError, ValueError, OverflowError):
        raise ArvidError(f"{what} must be a number, got {fps!r}") from None
    if not (0 < value <= MAX_FPS):  # NaN fails too
        raise ArvidError(f"{what} must be a frame rate in (0, {MAX_FPS:g}] frames per second, got {fps!r}")
    return value


def _check_frames_to_write(path: Path, frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ArvidError(f"{path}: frames to write must be a uint8 numpy array in [0, 255], got "
                         f"{_describe_array(frames)}; convert with (x * 255).round().astype(np.uint8)")
    if frames.ndim == 3:
        frames = frames[..., None]  # (T, H, W) gray -> (T, H, W, 1)
    if frames.ndim != 4 or frames.shape[3] not in (1, 3):
        raise ArvidError(f"{path}: frames to write must be (T, H, W) or (T, H, W, C) with C 1 or 3, "
                         f"got shape {frames.shape}")
    if min(frames.shape[:3]) == 0:
        raise ArvidError(f"{path}: nothing to write, frames have shape {frames.shape}")
    return frames


def _check_crf(path: Path, crf, default: int, top: int) -> str:
    crf = default if crf is None else crf
    if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= top:
        raise ArvidError(f"{path}: crf must be an integer in [0, {top}], got {crf!r}")
    return str(int(crf))


def _av_frame(frame: np.ndarray, pix_fmt: str) -> "av.VideoFrame":
    """One (H, W, C) uint8 frame as a PyAV frame in `pix_fmt` (yuv420p, gray or pal8)."""
    if pix_fmt == "pal8":
        return av.VideoFrame.from_ndarray(_palettize(frame), format="pal8")
    if pix_fmt == "gray":
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[..., 0]), format="gray")
    if frame.shape[2] == 1:
        return av.VideoFrame.from_ndarray(frame[..., 0], format="gray").reformat(format="yuv420p")
    # RGB -> 4:4:4 -> 4:2:0 with an area filter: better chroma than swscale's direct path.
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return rgb.reformat(format="yuv444p").reformat(format="yuv420p", interpolation="AREA")


def _palettize(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) uint8 -> (indices (H, W) uint8, palette (256, 4) ARGB); exact for <= 256 colours."""
    rgb = np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame
    key = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, inverse = np.unique(key.ravel(), return_inverse=True)
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 0] = 255
    if len(colours) <= 256:
        palette[:len(colours), 1] = colours >> 16
        palette[:len(colours), 2] = (colours >> 8) & 255
        palette[:len(colours), 3] = colours & 255
        return inverse.reshape(key.shape).astype(np.uint8), palette
    quantized = Image.fromarray(np.ascontiguousarray(rgb)).quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours_rgb = np.asarray(quantized.getpalette()[:768], np.uint8).reshape(-1, 3)
    palette[:len(colours_rgb), 1:] = colours_rgb
    return np.asarray(quantized), palette


def _check_no_strangers(path: Path) -> None:
    if path.is_dir():
        strangers = sorted(p.name for p in path.iterdir() if not is_arvids_frame(p))
        if strangers:
            raise ArvidError(f"{path}: the folder exists and holds other files ({strangers[0]}, ...) than png "
                             "frames arvid wrote; writing frames would replace it, so choose a new or empty folder")


def is_arvids_frame(path: Path) -> bool:
    """Whether `path` is a png frame arvid wrote: a plain file frame_NNNNN.png carrying arvid's mark (its fps text)."""
    if not (re.fullmatch(r"frame_\d+\.png", path.name) and path.is_file() and not path.is_symlink()):
        return False
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and _FPS_KEY in im.info
    except Exception:  # not an image, unreadable: not arvid's
        return False


@contextlib.contextmanager
def _writing(path: Path, is_dir: bool = False) -> Iterator[Path]:
    """atomic_path, with I/O and encoder failures reported as ArvidError naming `path`."""
    try:
        with atomic_path(path, is_dir=is_dir) as tmp:
            yield tmp
    except (OSError, av.FFmpegError) as e:
        raise ArvidError(f"{path}: cannot write it ({type(e).__name__}: {_short(e)})") from e


_WRITERS = (".mp4", ".webm", ".gif", ".npy")  # the file formats written; a path without a suffix: png frames


# ---------------------------------------------------------------------------------------- helpers


def _describe_array(x) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return type(x).__name__


def _short(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
