"""Atomic writes: write to a temporary name in the target's folder, then rename into place.

A crash, an exception or Ctrl-C before the rename leaves no file at the target (and the temporary
is removed), so readers only ever see a complete file or none. `os.replace` is atomic on POSIX
when both names are on one file system, which holds because the temporary sits beside the target.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from arvid.errors import ArvidError


def check_target(path: str | os.PathLike, *, is_dir: bool = False) -> None:
    """Raise ArvidError now if `atomic_path(path, is_dir=...)` could not write `path` (missing or
    read-only folder, a folder in place of a file or the reverse): check before long work."""
    path = Path(path)
    _check_parent_dir(path) if is_dir else _check_parent(path)


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise ArvidError(f"cannot write {path}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise ArvidError(f"cannot write {path}: {parent} is not a folder")
    if path.is_dir():
        raise ArvidError(f"cannot write {path}: it is an existing folder, give a file name")
    if not os.access(parent, os.W_OK):
        raise ArvidError(f"cannot write {path}: folder {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on failure delete it.

    The temporary keeps the target's suffix (so libraries that pick a format from the name work).
    With `is_dir=True` the temporary is a folder and replaces an existing folder at `path`.
    """
    path = Path(path)
    _check_parent(path) if not is_dir else _check_parent_dir(path)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual permissions
        if tmp.exists():
            os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask())
        if is_dir:
            if path.exists():  # moved aside onto a fresh empty folder of its own: never a name someone else uses
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


_RANDOM = "[a-z0-9_]+"  # the random part tempfile puts in a name (8 characters)


def is_temporary(path: Path, name: str, *, is_dir: bool = False) -> bool:
    """Whether `path` is a temporary arvid made for a target called `name` (and may remove): `.NAME.XXXXXXXX.tmp`
    or `.NAME.XXXXXXXX.old` for a folder, `.STEM.XXXXXXXX.tmpSUFFIX` for a file. Nothing else is arvid's."""
    target = Path(name)
    if is_dir:
        pattern = rf"\.{re.escape(target.name)}\.{_RANDOM}\.(tmp|old)"
    else:
        pattern = rf"\.{re.escape(target.stem)}\.{_RANDOM}\.tmp{re.escape(target.suffix)}"
    return re.fullmatch(pattern, Path(path).name) is not None


def _check_parent_dir(path: Path) -> None:
    parent = path.parent
    if path.is_symlink() and not path.exists():  # the final rename cannot put a folder there
        raise ArvidError(f"cannot write folder {path}: it is a symbolic link to {os.readlink(path)}, which does not "
                         "exist; give the real path, or a new name")
    if not parent.exists():
        raise ArvidError(f"cannot write {path}: folder {parent} does not exist (create it first)")
    if path.exists() and not path.is_dir():
        raise ArvidError(f"cannot write folder {path}: a file of that name exists")
    if not os.access(parent, os.W_OK):
        raise ArvidError(f"cannot write {path}: folder {parent} is not writable")


def umask() -> int:
    """The process umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def refuse_aliases(outputs, inputs) -> None:
    """ArvidError if an output names an input (the same file or folder, through links, '..' or another spelling),
    or a folder holding it: writing it would destroy what the user gave."""
    ins = [Path(os.path.realpath(p)) for p in inputs if p is not None]
    for out in outputs:
        real = Path(os.path.realpath(out))
        for src, given in zip(ins, [p for p in inputs if p is not None]):
            if real == src or real in src.parents:
                raise ArvidError(f"--out {out} is the input {given} (or holds it): arvid never writes over its input; "
                                 "give another output name")


def refuse_inside(path, outputs, flag: str) -> None:
    """ArvidError if `path` (written by `flag`) is one of `outputs` or inside one (a png folder): one would write
    over the other."""
    real = Path(os.path.realpath(path))
    for out in outputs:
        other = Path(os.path.realpath(out))
        if real == other or other in real.parents:
            raise ArvidError(f"{flag} {path} is the output {out} or inside it: one would write over the other; give "
                             f"{flag} a path outside it")


def refuse_foreign_folder(out, manifest: str, keys: tuple[str, ...], command: str) -> None:
    """The folder half of the overwrite rule: `command` writes its files into `out` only when `out` is new, empty, or
    a folder it wrote before (its `manifest` JSON is there, an object with `keys`); never over a user's files."""
    from arvid.utils.jsonfile import read_json

    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        data = read_json(out / manifest)
        ours = isinstance(data, dict) and all(k in data for k in keys)
    except ArvidError:  # missing, too large, not JSON
        ours = False
    if not ours:
        held = sorted(p.name for p in out.iterdir())
        raise ArvidError(f"--out {out} is a folder {command} did not write (it holds {held[0]}"
                         f"{', ...' if len(held) > 1 else ''}): its files would be replaced; give a new or empty folder")
