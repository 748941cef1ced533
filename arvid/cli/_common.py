"""Flags more than one command shares: the decoding flags of `arvid generate`, `extend` and `eval generation`,
made from `Sampling`'s fields, and --threads of the commands that compute.

Each setting of `arvid.generator.sampling.Sampling` becomes a flag (`top_k` -> `--top-k`) with its help text,
type and default from the dataclass: a new setting appears here without an edit. A flag left out is None
(unset), which `Sampling.build` fills from the model's recommended decoding, else the default.
"""

from __future__ import annotations

import argparse
import os
import re

THREADS_HELP = ("CPU threads (default: chosen for the work: the cores not busy when it starts, or one for a raster "
                "model's token-by-token steps; OMP_NUM_THREADS overrides the choice)")
PARALLEL_THREADS_HELP = ("CPU threads (default: the cores not busy when it starts; OMP_NUM_THREADS overrides the "
                         "choice)")


def add_sampling_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    from arvid.generator.sampling import Sampling

    for name in Sampling.settings():
        d = Sampling.describe(name)
        parser.add_argument(flag(name), type=int if d["integer"] else float, default=None,
                            help=f"{d['help']} (default: the model's recommended value, else {d['default']:g})")


def given(args: argparse.Namespace) -> dict:
    """The decoding settings the command line gave: {setting: value or None}."""
    from arvid.generator.sampling import Sampling

    return {name: getattr(args, name) for name in Sampling.settings()}


def flag(name: str) -> str:
    """The flag of a setting: top_k -> --top-k."""
    return "--" + name.replace("_", "-")


def set_threads(requested: int | None) -> None:
    """This command's CPU threads: as asked, else the cores not busy now (`arvid.utils.threads`)."""
    import torch

    from arvid.utils.threads import PARALLEL, check, choose

    if requested is not None:
        check(requested)
    torch.set_num_threads(choose(PARALLEL, requested))


def check_seed(seed: int, flag: str = "--seed") -> None:
    from arvid.generator.sampling import check_seed as check

    check(seed, flag)


def check_fps(fps: float | None, flag: str = "--fps") -> None:
    """None (unset) or a finite frame rate in (0, 1000]; 0 is refused, not ignored."""
    from arvid.video.io import check_fps as check

    if fps is not None:
        check(fps, flag)


OVERWRITE_HELP = ("replace an output file that exists (without it such a file is refused; a folder is written over "
                  "only when it holds nothing but what arvid wrote there)")


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def check_overwrite(path, overwrite: bool, flag: str = "--out") -> None:
    """The overwrite rule: a file that exists at an output is replaced only with --overwrite (arvid cannot tell
    its own files from the user's); folders have their own rule (only arvid's own content is replaced)."""
    import os

    from arvid.errors import ArvidError

    if not overwrite and os.path.lexists(path) and not os.path.isdir(path):
        raise ArvidError(f"{flag} {path} exists: arvid writes over a file only with --overwrite; add it, or give a "
                         "new name")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `arvid generate: error: ...` (the usage is what --help shows)."""

    def error(self, message: str):
        # a value of thousands of characters is named by its start and its length, not echoed whole
        message = re.sub(r"'([^']{60,})'", lambda m: f"'{m[1][:24]}...' ({len(m[1])} characters)", message)
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name) written as escapes."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)



class QuietStream:
    """stderr for a command's run: a write that fails (a pipe no one reads, as after Ctrl-C under `| tee`, a closed
    descriptor, a full disk) is dropped, never raised. What arvid says is not worth the frames it is saving."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._quietly(lambda s: s.write(text))
        return len(text)

    def flush(self) -> None:
        self._quietly(lambda s: s.flush())

    def isatty(self) -> bool:
        return bool(self._quietly(lambda s: s.isatty()))

    def __getattr__(self, name):
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def _quietly(self, act):
        if self._stream is None:
            return None
        try:
            return act(self._stream)
        except (OSError, ValueError):
            self._silence()
            return None

    def _silence(self) -> None:
        """Point the broken stream's descriptor at /dev/null, so Python's own flush at exit cannot fail either."""
        try:
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass
        self._stream = None


class OutputStream(QuietStream):
    """stdout for a command's run: what the user asked to see, so a write that fails (a full disk, a closed
    descriptor) is one ArvidError, not a traceback; the descriptor then points at /dev/null, so Python's own
    flush at exit cannot fail again."""

    def _quietly(self, act):
        if self._stream is None:
            return None
        try:
            return act(self._stream)
        except (OSError, ValueError) as e:
            from arvid.errors import ArvidError

            self._silence()
            why = getattr(e, "strerror", None) or str(e)
            raise ArvidError(f"cannot write to standard output ({why}): send it to a file or program that can "
                             "take it") from None
