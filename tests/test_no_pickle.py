"""Nothing in arvid ever unpickles a file: weights load through safetensors, configs through JSON."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = [
    r"\btorch\.load\s*\(",
    r"\bpickle\.loads?\s*\(",
    r"\bcloudpickle\b",
    r"\bdill\b",
    r"\bjoblib\.load\s*\(",
    r"allow_pickle\s*=\s*True",
    r"\byaml\.load\s*\(",
    r"(?<![.\w])eval\s*\(",  # builtin eval, not model.eval()
    r"(?<![.\w])exec\s*\(",
]


def source_files():
    for folder in ("arvid", "kernels", "benchmarks"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_code_path_unpickles_or_evaluates_files():
    hits = []
    for path in source_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern in FORBIDDEN:
                if re.search(pattern, code):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "unsafe loading found:\n" + "\n".join(hits)


def test_the_scan_would_catch_a_torch_load(tmp_path):
    line = "state = torch.load(path)"
    assert any(re.search(p, line) for p in FORBIDDEN)
    assert any(re.search(p, "np.load(f, allow_pickle=True)") for p in FORBIDDEN)
    assert not any(re.search(p, "model.eval()") for p in FORBIDDEN)
