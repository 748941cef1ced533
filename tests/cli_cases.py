"""What the nothing-lost tests share: running the CLI in-process and reading its stderr, the one-line
refusal check, and snapshots of a folder. (pytest puts tests/ on sys.path: `from cli_cases import ...`.)"""

from __future__ import annotations

import re
from pathlib import Path

from arvid.cli.main import main

PROGRESS = re.compile(r"[^|]*:\s+\d+%\|")  # a progress bar's line (generating, training)


def run(capsys, *argv) -> tuple[int, list[str]]:
    """Run `arvid ARGV` in this process -> (exit code, stderr's lines without progress bars)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err)
             if line.strip() and not line.startswith("generating") and not PROGRESS.match(line)]
    return code, lines


def refused(capsys, *argv, match: str) -> str:
    """`arvid ARGV` exits 2 with one `arvid...error:` line containing `match`, and no traceback."""
    code, lines = run(capsys, *argv)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("arvid") and "error:" in lines[0] and "Traceback" not in lines[0], lines
    assert match in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> dict:
    """Every path below `folder` -> its bytes (None for folders and symlinks): what a command must not change."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() and not p.is_symlink() else None
            for p in sorted(folder.rglob("*"))}


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if re.search(r"\.(tmp|old)(\.|$)", p.name)], list(folder.rglob("*"))
