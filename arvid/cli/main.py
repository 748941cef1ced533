"""Entry point of the `arvid` command.

Every module in `arvid.cli` (other than this one) that defines `register(subparsers)` adds one
subcommand; `register` sets `func` on its parser, a callable taking the parsed arguments and
returning an exit code. `ArvidError` becomes one line on stderr and exit code 2; Ctrl-C exits 130 and
SIGTERM 143, after a command that writes video has finished its output with the frames made so far.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys

from arvid.cli._common import Parser, printable
from arvid.errors import ArvidError
from arvid.version import __version__

_DESCRIPTION = """\
arvid: autoregressive latent-token video generation.

A causal 3D-conv VQ tokenizer turns frames into tokens; a causal transformer with fused Triton
attention and a static KV cache samples the next token; clips of any length decode back to video.
Run `arvid COMMAND --help` for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="arvid", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"arvid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import arvid.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_") or mod.name == "main":
            continue
        module = importlib.import_module(f"arvid.cli.{mod.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_joined_values(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as e:  # --help (0), or a parser error already said in one line (2)
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    previous = signal.signal(signal.SIGTERM, _terminate)  # what timeout, Docker and Slurm send: as Ctrl-C
    try:
        return int(args.func(args) or 0)
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
        signal.signal(signal.SIGTERM, previous)


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
    """SIGTERM, handled as Ctrl-C is (the output keeps what was made), with its own exit code."""

    exit_code = 143


def _terminate(signum, frame) -> None:
    raise Terminated()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
