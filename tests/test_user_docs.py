"""What users read speaks to users: the README, docs/ (the research log aside), the model card and every
`--help` name no development session, no issue number, no module path and no source file; `arvid --help`
answers without importing torch; no README paragraph runs past about 120 words.

Commands in code blocks may name real paths (a recipe's `--out`, a script a figure came from) and Python
blocks import from arvid's packages; link targets are addresses, not text. Those are left out of the check for
module paths and source files, never out of the check for sessions and issues.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from arvid.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

SESSION = re.compile(r"(?<!ssh )(?<!login )(?<!terminal )\bsessions?\b", re.I)
ISSUE = re.compile(r"\bissues? #?\d+|(?<![\w&/])#\d{1,4}\b", re.I)
MODULE_PATH = re.compile(r"\barvid/[\w/.-]+|\barvid\.[a-z_]\w*|\bkernels/[\w/.-]+")
SOURCE_FILE = re.compile(r"\b[\w/.-]+\.py\b")
MAX_WORDS = 120


def user_documents() -> list[Path]:
    docs = [p for p in (ROOT / "docs").rglob("*.md") if "research" not in p.relative_to(ROOT / "docs").parts]
    return [ROOT / "README.md", ROOT / "arvid" / "weights" / "default" / "MODEL_CARD.md", *sorted(docs)]


def prose(text: str) -> str:
    """`text` without fenced code blocks and link targets: what a reader reads as sentences."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r'<img [^>]*>', "", text)


def problems(text: str) -> list[str]:
    found = [m.group(0) for pattern in (SESSION, ISSUE) for m in pattern.finditer(text)]
    return found + [m.group(0) for pattern in (MODULE_PATH, SOURCE_FILE) for m in pattern.finditer(prose(text))]


@pytest.mark.parametrize("path", user_documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_documents_speak_to_users(path):
    assert problems(path.read_text()) == [], f"{path.relative_to(ROOT)} speaks to arvid's developers"


def test_the_check_finds_what_it_looks_for():
    said = ("Session 7 tried it (issue 24, #12); see arvid/eval/generation.py and arvid.train.tokens.\n"
            "```bash\narvid pack --out arvid/weights/default\n```\n[card](arvid/weights/default/MODEL_CARD.md)")
    assert problems(said) == ["Session", "issue 24", "#12", "arvid/eval/generation.py", "arvid.train",
                              "arvid/eval/generation.py"]
    assert problems("an ssh session that drops sends SIGHUP") == []


def paragraphs(markdown: str) -> list[str]:
    """The README's paragraphs: blocks between blank lines, without code, tables, headings or images."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text)]
    return [b for b in blocks if b and not b.startswith(("|", "#", "<img", "!["))]


def test_no_readme_paragraph_runs_past_about_120_words():
    long = [(len(p.split()), p[:60]) for p in paragraphs((ROOT / "README.md").read_text()) if len(p.split()) > MAX_WORDS]
    assert long == []


def help_texts() -> dict[str, str]:
    """`arvid ... --help` of every command and kind, as a user sees it."""
    commands = [[]]
    for name, parser in build_parser()._subparsers._group_actions[0].choices.items():
        commands.append([name])
        kinds = [a for a in parser._actions if a.dest in ("kind",)]
        for action in kinds:
            choices = action.choices.keys() if isinstance(action.choices, dict) else action.choices
            commands += [[name, kind] for kind in choices]
    texts = {}
    for argv in commands:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*argv, "--help"]) == 0
        texts[" ".join(["arvid", *argv])] = out.getvalue()
    return texts


def test_every_help_text_speaks_to_users():
    texts = help_texts()
    assert {"arvid", "arvid generate", "arvid train tokenizer", "arvid eval generation"} <= set(texts)
    found = {cmd: problems(text) for cmd, text in texts.items() if problems(text)}
    assert found == {}


LIGHT = ("--help", "info --help", "data --help", "train --help", "tokenize --help", "detokenize --help",
         "bench --help", "generate --help", "extend --help", "eval --help", "eval generation --help",
         "eval tokenizer --help", "pack --help", "train tokenizer --help", "train generator --help",
         "train toy --help", "train reader --help", "train layers --help")


@pytest.mark.parametrize("argv", LIGHT)
def test_help_answers_without_importing_torch(argv):
    code = ("import sys, contextlib, io\nfrom arvid.cli.main import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main({argv.split()!r})\n"
            "print(code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.split() == ["0", "False"], out.stderr
