"""The package's layers point down: no import circle, and no import from a lower layer to a higher one.

The import graph is built from the source (every `import` and `from ... import`, those inside functions
included: a lazy import is still a dependency). Layers, as CONTRIBUTING.md's layout section gives them, from
the bottom; a part may import its own modules and any part of a lower layer, nothing else (two parts of
one layer stay independent of each other):
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = (
    ("errors", "version"),  # arvid's error type and version
    ("utils",),  # atomic writes, devices
    ("files", "kernels", "video"),  # model files, attention ops, media
    ("data", "tokenizer", "generator", "reader"),  # datasets and the models
    ("pipeline",),  # the inference core: a tokenizer and a generator turned into video
    ("train", "eval"),  # the workbench: training engine and tasks, evaluation
    ("benchmark", "info"),  # the benchmark runner, what arvid runs on
    ("cli",),  # the command line
    ("arvid", "__main__"),  # the public API (`from arvid import Arvid`), `python -m arvid`
)
RANK = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for arvid/ and kernels/ (installed as arvid.kernels)."""
    found = {}
    for path in sorted((ROOT / "arvid").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "kernels").glob("*.py")):
        found["arvid.kernels" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import sub` runs pkg/__init__ too: an edge to the package as well as to the submodule
                targets = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def part(module: str) -> str:
    return "arvid" if module == "arvid" else module.split(".")[1]


def test_every_part_of_the_package_has_a_layer():
    assert {part(m) for m in modules()} - set(RANK) == set(), "give the new part a layer here and in CONTRIBUTING.md"


def test_imports_point_down_the_layers():
    wrong = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                   if part(a) != part(b) and RANK[part(b)] >= RANK[part(a)])
    assert wrong == [], "imports that point up or sideways between layers:\n" + "\n".join(wrong)


def test_no_import_circle():
    graph = import_graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == [], f"import circles: {cycles}"


def test_the_graph_sees_lazy_and_relative_imports():
    """The checks above are only as good as the graph: it holds imports inside functions too."""
    graph = import_graph()
    assert "arvid.pipeline" in graph["arvid"]  # `Arvid` is imported inside arvid.__getattr__
    assert "arvid.generator.rope" in graph["arvid.generator.model"]  # `from arvid.generator import rope`


def test_generating_does_not_import_the_workbench():
    code = ("import sys, arvid; m = arvid.Arvid.from_pretrained(device='cpu'); m.generate(1); "
            "print(sorted({n.split('.')[1] for n in sys.modules if n.startswith('arvid.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    loaded = set(eval(out.stdout.strip().splitlines()[-1]))
    assert "pipeline" in loaded and not loaded & {"train", "eval", "cli", "benchmark"}, loaded
