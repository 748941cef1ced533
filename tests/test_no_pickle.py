"""Nothing in arvid ever unpickles a file or evaluates code: weights load through safetensors,
configs through JSON. The scan reads the syntax tree, so strings and comments never trip it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_CALLS = {"torch.load", "pickle.load", "pickle.loads", "joblib.load", "yaml.load", "dill.load",
                   "cloudpickle.load", "marshal.loads", "eval", "exec", "torch.serialization.load"}
FORBIDDEN_IMPORTS = {"pickle", "dill", "cloudpickle", "marshal", "shelve"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def unsafe(source: str) -> list[str]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in FORBIDDEN_CALLS:
                hits.append(f"line {node.lineno}: {name}(...)")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    hits.append(f"line {node.lineno}: allow_pickle={ast.unparse(kw.value)}")
                if kw.arg == "weights_only" and not (isinstance(kw.value, ast.Constant) and kw.value.value is True):
                    hits.append(f"line {node.lineno}: weights_only={ast.unparse(kw.value)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            hits += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in FORBIDDEN_IMPORTS]
    return hits


def test_no_code_path_unpickles_or_evaluates():
    hits = []
    for folder in ("arvid", "kernels", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            hits += [f"{path.relative_to(ROOT)} {h}" for h in unsafe(path.read_text())]
    assert not hits, "unsafe loading found:\n" + "\n".join(hits)


def test_the_scan_catches_what_it_should_and_nothing_else():
    assert unsafe("import torch\nstate = torch.load(path)")
    assert unsafe("import numpy as np\nnp.load(f, allow_pickle=True)")
    assert unsafe("import pickle")
    assert unsafe("eval(text)")
    assert not unsafe("model.eval()\nhelp = 'the default eval (held out)'  # eval(x) in a comment")
    assert not unsafe("np.load(f, allow_pickle=False)")
