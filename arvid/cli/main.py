"""Entry point of the `arvid` command.

Every module in `arvid.cli` (other than this one) that defines `register(subparsers)` adds one
subcommand; `register` sets `func` on its parser, a callable taking the parsed arguments and
returning an exit code. `ArvidError` becomes one line on stderr and exit code 2; Ctrl-C exits 130 and
SIGTERM 143, after a command that writes video has finished its output with the frames made so far.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pkgutil
import signal
import sys

from arvid.cli._common import OutputStream, Parser, QuietStream, printable
from arvid.errors import ArvidError
from arvid.version import __version__

_DESCRIPTION = """\
arvid: generate videos of any length, and continue your own, token by token.

  arvid generate --frames 64 --label 3,7 --out clip.mp4   a new clip from the model shipped with arvid
  arvid extend clip.mp4 --frames 32 --out longer.mp4      the clip, then 32 new frames
  arvid train tokenizer --help                            train on your own videos

A tokenizer turns frames into discrete tokens, a transformer predicts the next ones, and the tokens
decode back into video as they come, so memory stays flat however long the clip.
Run `arvid COMMAND --help` for a command's options.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `arvid` parser: every command built in full, or with `only`, that command alone, the others listed by
    name and summary (each module's COMMANDS). Only a training task's options need torch (the decoding
    settings do not); listing the commands does not, so `arvid --help` answers at once."""
    parser = Parser(prog="arvid", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"arvid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import arvid.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_") or mod.name == "main":
            continue
        module = importlib.import_module(f"arvid.cli.{mod.name}")
        if not hasattr(module, "register"):
            continue
        commands = getattr(module, "COMMANDS", {})
        if only is None or only in commands or not commands:
            module.register(sub)
        else:
            for name, summary in commands.items():
                sub.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    stdout, sys.stdout = sys.stdout, OutputStream(sys.stdout)  # a full or closed stdout: one line, no traceback
    try:
        return _main(argv)
    except KeyboardInterrupt as e:  # Ctrl-C before the command began (building the parser): nothing made yet
        with contextlib.suppress(Exception):
            print("arvid: interrupted", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    except ArvidError as e:  # what a command printed could not be flushed
        with contextlib.suppress(Exception):
            print(f"arvid: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    argv = _joined_values(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(only=next((a for a in argv if not a.startswith("-")), ""))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0), or a parser error already said in one line (2)
        sys.stdout.flush()
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    previous = _catch_stop_signals()
    stderr, sys.stderr = sys.stderr, QuietStream(sys.stderr)  # a closed or full stderr never costs the work
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except SystemExit as e:  # a command's own parser (arvid train KIND): --help, or its one-line error
        return e.code if isinstance(e.code, int) else 2
    except ArvidError as e:
        print(f"arvid: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print("arvid: error: out of memory: ask for less (fewer frames at once, a smaller --batch or --size)",
              file=sys.stderr)
        return 2
    except RuntimeError as e:  # the allocators say so in a RuntimeError
        if not any(s in str(e) for s in ("can't allocate memory", "out of memory", "Cannot allocate memory")):
            raise
        print(f"arvid: error: out of memory ({printable(str(e).splitlines()[0])[:160]}): ask for less (a smaller "
              "--batch or --size)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        said = " ".join(str(a) for a in e.args if a)
        print("arvid: interrupted" + (f": {said}" if said else ""), file=sys.stderr)
        return getattr(e, "exit_code", 130)
    finally:
        sys.stderr = stderr
        for sig, handler in previous.items():
            signal.signal(sig, handler)


VALUE_FLAGS = ("--label",)  # flags whose values may start with '-' (a label -1 means none)


def _joined_values(argv: list[str]) -> list[str]:
    """`--label -1,3` as `--label=-1,3`: argparse reads a value starting with '-' as a flag otherwise."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in VALUE_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2].isdigit():
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP, SIGQUIT, SIGUSR1), handled as Ctrl-C is (the output keeps what was made), with the
    exit code of that signal (128 + its number: 143 for SIGTERM)."""

    exit_code = 143


# what timeout, Docker and Slurm (SIGTERM), a dropped ssh session (SIGHUP), Ctrl-\ (SIGQUIT) and job tools
# (SIGUSR1) send: each stops the work as Ctrl-C does; a signal the caller set to be ignored (nohup) stays ignored
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


def _catch_stop_signals() -> dict:
    """Handle STOP_SIGNALS as interruptions for this command; -> the handlers to put back after it."""
    previous = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _terminate)
    return previous


def _terminate(signum, frame) -> None:
    stop = Terminated()
    stop.exit_code = 128 + signum
    raise stop


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
