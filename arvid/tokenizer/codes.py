"""Code files (.npz): one clip's tokens and what is needed to decode them.

    save_codes(path, codes, tok, fps=8.0)   # codes (t, h, w) from `tok`
    f = load_codes(path); f.check(tok)      # ArvidError if `tok` did not make these codes

`load_codes` bounds the clip the codes decode to (frames, pixels per frame, bytes) with the video
reader's `ReadLimits`, before anything is decoded: a few KB of codes can describe a clip of
terabytes. Pass `limits=ReadLimits(...)` to change the bounds.

Arrays in the file (no pickles; `np.load(..., allow_pickle=False)` reads it):
    codes            uint16 (or int32 above 65,536 codes) (t, h, w)
    codebook_size    int64 ()
    config_fingerprint, weights_fingerprint   str (): hashes of the tokenizer's config and weights
    fps              float64 ()
    frames, height, width, channels, temporal_factor, spatial_factor   int64 ()
    format_version   int64 ()
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arvid.errors import ArvidError
from arvid.tokenizer.frames import pixel_frames
from arvid.utils.atomic import atomic_path
from arvid.video.io import ReadLimits

FORMAT_VERSION = 1
_INTS = ("codebook_size", "frames", "height", "width", "channels", "temporal_factor", "spatial_factor", "format_version")
_STRS = ("config_fingerprint", "weights_fingerprint")
_KEYS = {"codes", "fps", *_INTS, *_STRS}
_MAX_BYTES = 1 << 30  # per array: a clip's codes are far smaller
_SCALAR_BYTES = 4096  # a header value's member (.npy header and one scalar) is a few hundred bytes


def weights_fingerprint(tok) -> str:
    """A short hash of the weights that decide what the codes are: the encoder's and the quantizer's
    (names, shapes and bytes). The decoder only renders codes, so a decoder trained further
    (`arvid train tokenizer --init DIR --train-part decoder`) still reads the code files of DIR. A tokenizer
    that codes with context encodes against its decoder's output, and a layered tokenizer chooses and cuts its
    reference as its decoder draws it, so there every weight counts."""
    h = hashlib.sha256()
    every = tok.first_frames == 0 or tok.config.context
    for name, t in sorted(tok.state_dict().items()):
        if not every and not name.startswith(("encoder.", "quantizer.")):
            continue
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class CodesFile:
    codes: np.ndarray  # int64 (t, h, w)
    codebook_size: int
    config_fingerprint: str
    weights_fingerprint: str
    fps: float
    frames: int
    height: int
    width: int
    channels: int
    temporal_factor: int
    spatial_factor: int
    path: Path | None = None

    def check(self, tok) -> None:
        """Raise ArvidError unless `tok` is the tokenizer that made these codes."""
        where = self.path or "the codes"
        if self.codebook_size != tok.codebook_size:
            raise ArvidError(f"{where}: made by a tokenizer with {self.codebook_size} codes, but this one has "
                             f"{tok.codebook_size}: decode with the tokenizer that encoded it")
        if self.config_fingerprint != tok.config.fingerprint():
            raise ArvidError(f"{where}: made by a tokenizer with config fingerprint {self.config_fingerprint}, "
                             f"this one is {tok.config.fingerprint()}: decode with the tokenizer that encoded it")
        if self.weights_fingerprint != weights_fingerprint(tok):
            raise ArvidError(f"{where}: made by a tokenizer with the same settings but other weights "
                             f"({self.weights_fingerprint}, this one {weights_fingerprint(tok)}): decode with the "
                             "tokenizer folder that encoded it")
        if self.frames != pixel_frames(len(self.codes), self.temporal_factor, tok.first_frames):
            raise ArvidError(f"{where}: its {len(self.codes)} latent frames make {self.frames} frames, which this "
                             f"tokenizer's would not: decode with the tokenizer that encoded it")
        header = (self.temporal_factor, self.spatial_factor, self.channels)
        if header != (tok.temporal_factor, tok.spatial_factor, tok.config.channels):
            raise ArvidError(f"{where}: the header says temporal factor {header[0]}, spatial factor {header[1]}, "
                             f"{header[2]} channels, the tokenizer that made it has {tok.temporal_factor}, "
                             f"{tok.spatial_factor}, {tok.config.channels}: the file was edited; "
                             "tokenize the clip again")


def save_codes(path: str | os.PathLike, codes, tok, fps: float) -> Path:
    """Write codes (t, h, w) of one clip made by `tok`, atomically."""
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise ArvidError(f"save_codes takes the codes of one clip (t, h, w), got shape {codes.shape}")
    dtype = np.uint16 if tok.codebook_size <= 2**16 else np.int32
    t, h, w = codes.shape
    s = tok.spatial_factor
    arrays = dict(
        codes=codes.astype(dtype), codebook_size=tok.codebook_size, fps=np.float64(fps),
        config_fingerprint=np.str_(tok.config.fingerprint()), weights_fingerprint=np.str_(weights_fingerprint(tok)),
        frames=pixel_frames(t, tok.temporal_factor, tok.first_frames), height=h * s, width=w * s, channels=tok.config.channels,
        temporal_factor=tok.temporal_factor, spatial_factor=s, format_version=FORMAT_VERSION,
    )
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # removes the temporary on failure: nothing half-written stays
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    except OSError as e:
        raise ArvidError(f"{path}: cannot write the code file ({type(e).__name__}: {' '.join(str(e).split())}); "
                         "free some space or choose another folder") from e
    return path


def load_codes(path: str | os.PathLike, limits: ReadLimits | None = None) -> CodesFile:
    """Read and validate a code file; ArvidError naming the file for anything wrong with it, and for
    codes that decode to a clip over `limits` (default `ReadLimits()`)."""
    path = Path(path)
    if not path.is_file():
        raise ArvidError(f"{path}: no such code file")
    data = _read_arrays(path)
    missing, unknown = sorted(_KEYS - set(data)), sorted(set(data) - _KEYS)
    if missing or unknown:
        raise ArvidError(f"{path} is not an arvid code file: "
                         + "; ".join(s for s in (missing and f"missing {missing}", unknown and f"unknown {unknown}") if s))
    try:
        ints = {k: int(data[k]) for k in _INTS}
        strs = {k: str(data[k]) for k in _STRS}
        fps = float(data["fps"])
    except (TypeError, ValueError):
        raise ArvidError(f"{path}: malformed header values (not scalars of the right type)") from None
    if ints["format_version"] != FORMAT_VERSION:
        raise ArvidError(f"{path}: code file format {ints['format_version']}, this arvid reads {FORMAT_VERSION}")
    codes = data["codes"]
    if codes.ndim != 3 or codes.dtype.kind not in "iu" or min(codes.shape, default=0) < 1:
        raise ArvidError(f"{path}: codes must be integers (t, h, w) with t >= 1, h >= 1, w >= 1, "
                         f"got {codes.dtype} {codes.shape}")
    decoded = _decoded_size(path, codes.shape, ints, limits or ReadLimits(), first=0 if ints["frames"] == pixel_frames(
        len(codes), max(ints["temporal_factor"], 1), 0) else 1)
    codes = codes.astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= ints["codebook_size"]):
        raise ArvidError(f"{path}: codes outside [0, {ints['codebook_size']})")
    said = (ints["frames"], ints["height"], ints["width"])
    if said != decoded:
        raise ArvidError(f"{path}: the header says {said[0]} frames of {said[2]}x{said[1]}, but its codes "
                         f"{codes.shape} decode to {decoded[0]} frames of {decoded[2]}x{decoded[1]}: the file was "
                         "edited or damaged")
    del ints["format_version"]
    return CodesFile(codes=codes, fps=fps, path=path, **ints, **strs)


def _decoded_size(path: Path, shape: tuple[int, int, int], header: dict[str, int], limits: ReadLimits, first: int = 1):
    """(T, H, W) of the clip codes (t, h, w) decode to by the header's factors (`first`: frames the first latent frame
    makes, 0 for a layered tokenizer's codes), checked against `limits`."""
    tau, s, c = header["temporal_factor"], header["spatial_factor"], header["channels"]
    if not (1 <= tau <= 64 and 1 <= s <= 1024 and c in (1, 3)):
        raise ArvidError(f"{path}: malformed header values (temporal factor {tau}, spatial factor {s}, channels {c})")
    t, h, w = shape
    frames, height, width = pixel_frames(t, tau, first), h * s, w * s
    limits.check(path, frames=frames, height=height, width=width, channels=c, declared=True)
    return frames, height, width


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz, read as untrusted input: the headers are checked (no object arrays, no
    absurd sizes) before any data is read, and every reader failure becomes one ArvidError."""
    def bad(why: str) -> ArvidError:
        return ArvidError(f"{path} is not an arvid code file (.npz): {' '.join(why.split())}")

    if not zipfile.is_zipfile(path):
        raise bad("not a zip archive")
    data = {}
    try:
        with zipfile.ZipFile(path) as zf:
            _check_members(zf.infolist(), bad)
            for info in zf.infolist():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise bad(f"{info.filename} has .npy format version {version}")
                    shape, _, dtype = read_header(f)
                    if dtype.hasobject:
                        raise bad(f"{info.filename} holds Python objects, which arvid never unpickles (allow_pickle is off)")
                    if int(np.prod(shape, dtype=object)) * dtype.itemsize > _MAX_BYTES:
                        raise bad(f"{info.filename} declares shape {shape}, over {_MAX_BYTES >> 20} MiB")
                with zf.open(info) as f:
                    data[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    except ArvidError:
        raise
    except Exception as e:  # zlib.error, NotImplementedError, BadZipFile, ValueError, EOFError...: all a bad file
        raise bad(f"{type(e).__name__}: {e}") from None
    return data


def _check_members(infos: list[zipfile.ZipInfo], bad) -> None:
    """Names and declared (uncompressed) sizes from the zip's directory, before any member is read: a few KB can
    declare gigabytes of zeros, and reading stops at the declared size."""
    for info in infos:
        if not info.filename.endswith(".npy") or info.filename.count("/"):
            raise bad(f"unexpected member {info.filename!r}")
    names = [info.filename[:-4] for info in infos]
    unknown = sorted(set(names) - _KEYS)
    if unknown:
        raise bad(f"unknown {unknown}")
    if len(names) != len(set(names)):
        raise bad(f"a member appears twice ({sorted(n for n in set(names) if names.count(n) > 1)})")
    for info in infos:
        limit = _MAX_BYTES + _SCALAR_BYTES if info.filename == "codes.npy" else _SCALAR_BYTES
        if info.file_size > limit:
            raise bad(f"{info.filename} declares {info.file_size} bytes, over the {limit} such a member can hold")
