"""`arvid bench`: run the benchmark suite in benchmarks/ and turn its results into a report.

    from arvid.benchmark import BenchRequest, run_bench
    outcome = run_bench(BenchRequest(suite="all", quick=True, out="out/bench"))

The suite runs in a child `python -m pytest` with pytest-benchmark (`--benchmark-json`). Then DIR
receives, each file written atomically:
    benchmark.json     pytest-benchmark's JSON (its `compare` reads it), plus an "arvid" entry with
                       the device, the request and the skipped cases
    summary.md         one table per benchmark group: figure, the group's baseline figure measured in
                       the same run, their ratio, time per call, memory, device
    pytest.log         the child's whole output (pytest-benchmark's own wide tables, skip reasons); the
                       terminal shows only its progress lines, then a short summary (`terminal_summary`)
    *.png              throughput against length, ratios against the baselines, time per latent frame
                       and memory against clip length (only the plots the run has data for)

Figures. A benchmark's figure is what it recorded in `extra_info` (FIGURES, first match), else one
derived from a count it recorded (`frames`, `tokens`) over the median time, else the median time per
call. The baseline of a group is the case marked `extra_info["baseline"] = True`, else one named
like a baseline (BASELINE_HINTS: sdpa, recomputing, whole clip, ...), else the smallest value of a
parameter that varies (frame 16, batch 1). Ratio > 1 means better than the baseline.

On the CPU the child runs with CUDA hidden, `ARVID_ATTENTION_BACKEND=pytorch` and without the Triton
interpreter (ARVID_BENCH=1 tells benchmarks/conftest.py so): interpreter timings mean nothing.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import platform
import subprocess
import textwrap
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from arvid.errors import ArvidError
from arvid.utils import resolve_device
from arvid.utils.atomic import atomic_path, atomic_write_text, refuse_foreign_folder
from arvid.version import __version__

SUITES = {
    "kernels": ("bench_kernels.py",),
    "generation": ("bench_generator.py", "bench_pipeline.py", "bench_threads.py", "bench_decoding.py",
                   "bench_memory.py", "bench_models.py"),
    "tokenizer": ("bench_tokenizer.py",),
}
SUITE_NAMES = (*SUITES, "all")
# extra_info key, unit, scale, higher is better
FIGURES = (
    ("tflops", "TFLOP/s", 1.0, True),
    ("gb_per_s", "GB/s", 1.0, True),
    ("seconds_per_latent_frame", "ms/latent frame", 1e3, False),
    ("frames_per_s", "frames/s", 1.0, True),
    ("tokens_per_s", "tokens/s", 1.0, True),
)
COUNTS = (("frames", "frames/s"), ("tokens", "tokens/s"))  # extra_info counts per call -> rates
BASELINE_HINTS = ("sdpa", "recomput", "whole", "reference", "baseline")
LENGTH_KEYS = ("L", "S", "frame", "frames", "length", "T")  # parameters that are a length
LENGTH_LABELS = {"L": "L (query tokens)", "S": "S (cache slots)", "frame": "latent frame of the clip",
                 "T": "T (frames)"}
JSON_NAME, SUMMARY_NAME, LOG_NAME = "benchmark.json", "summary.md", "pytest.log"


@dataclass
class BenchRequest:
    suite: str = "all"  # kernels | generation | tokenizer | all
    quick: bool = False
    device: str = "auto"
    out: str | os.PathLike = "out/bench"
    select: str | None = None  # pytest -k expression
    suite_dir: str | os.PathLike | None = None  # the benchmarks/ folder; default: the source checkout's


@dataclass
class Outcome:
    out: Path
    files: list[Path]
    returncode: int  # 0, or 1 when some benchmarks failed
    failed: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # a few short lines for the terminal (`terminal_summary`)


# ---- running the suite ------------------------------------------------------------------------


def run_bench(req: BenchRequest, echo=print) -> Outcome:
    """Run the suite in a child pytest, then write the JSON, summary and plots into req.out."""
    files = suite_files(req.suite, req.suite_dir)
    check_tools()
    check_select(req.select)
    device = resolve_device(req.device)
    out = prepare_out(req.out)
    info = device_info(device)
    echo(f"arvid bench {req.suite}{' --quick' if req.quick else ''} on {info['name']}: {len(files)} file(s)")
    with tempfile.TemporaryDirectory(prefix="arvid-bench-") as tmp:
        json_path, xml_path = Path(tmp) / "raw.json", Path(tmp) / "junit.xml"
        start = time.perf_counter()
        rc, log = run_child(pytest_command(files, json_path, xml_path, req), files[0].parent.parent,
                            child_env(device), echo)
        wall = time.perf_counter() - start
        atomic_write_text(out / LOG_NAME, log)
        check_returncode(rc, json_path, req, out / LOG_NAME)
        data = json.loads(json_path.read_text())
        cases = junit_cases(xml_path)
    data["arvid"] = run_info(req, info, cases, wall)
    written = write_report(out, data) + [out / LOG_NAME]
    failed = [name for name, status, _ in cases if status == "failed"]
    return Outcome(out=out, files=written, returncode=1 if failed else 0, failed=failed,
                   summary=terminal_summary(rows_from(data)))


# what of the child's output reaches the terminal: pytest's progress lines, failures, its closing count
_SHOWN = re.compile(r"\[\s*\d+%\]\s*$|^(FAILED|ERROR) |^=*\s*\d+ (passed|failed|skipped|errors?|deselected)\b.* in ")


def run_child(cmd: list[str], cwd: Path, env: dict, echo) -> tuple[int, str]:
    """Run the suite; -> (exit code, its whole output). Only progress and failure lines are echoed."""
    lines = []
    with subprocess.Popen(cmd, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as child:
        try:
            for line in child.stdout:
                lines.append(line)
                if _SHOWN.search(line):
                    echo(line.rstrip("\n")[:120])
            rc = child.wait()
        except BaseException:  # Ctrl-C or a signal: the suite stops with arvid, as subprocess.call does
            child.kill()
            raise
    return rc, "".join(lines)


def suite_files(suite: str, suite_dir=None) -> list[Path]:
    if suite not in SUITE_NAMES:
        raise ArvidError(f"unknown benchmark suite {suite!r}: use one of {', '.join(SUITE_NAMES)}")
    root = Path(suite_dir) if suite_dir is not None else Path(__file__).resolve().parents[1] / "benchmarks"
    names = [n for s, ns in SUITES.items() if suite in (s, "all") for n in ns]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ArvidError(f"benchmark file(s) {', '.join(missing)} not found in {root}: the suite lives in the "
                         "benchmarks/ folder of a source checkout; run arvid bench from one (pip install -e .)")
    return [root / n for n in names]


def check_tools() -> None:
    missing = [name for name in ("pytest", "pytest_benchmark", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise ArvidError(f"arvid bench needs {', '.join(missing)}: install them with pip install 'arvid[test]'")


def check_select(select: str | None) -> None:
    """ArvidError for a -k expression pytest would refuse, before the output folder is made or anything runs."""
    if select is None:
        return
    try:
        from _pytest.mark.expression import Expression  # pytest's own parser: what the child run would say
    except ImportError:  # another pytest layout: the child run says it
        return
    try:
        Expression.compile(select)
    except Exception as e:  # noqa: BLE001 - SyntaxError in pytest 8-9, ParseError before
        why = e.msg if isinstance(e, SyntaxError) else str(e)
        raise ArvidError(f"-k {select!r} is not a valid pytest -k expression ({why}): join names with and, or, not "
                         "and parentheses, e.g. -k 'prefill and not 1024'") from None


def prepare_out(out) -> Path:
    """Create the output folder and check that files can be written into it."""
    out = Path(out)
    refuse_foreign_folder(out, JSON_NAME, ("arvid", "benchmarks"), "arvid bench")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".arvid-bench-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ArvidError(f"cannot write benchmark results into {out}: {e.strerror or e}; "
                         "give --out a folder you can write") from e
    return out


def pytest_command(files: list[Path], json_path: Path, xml_path: Path, req: BenchRequest) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", *map(str, files), "-q", "-p", "no:cacheprovider",
           "--benchmark-enable", f"--benchmark-json={json_path}", f"--junitxml={xml_path}",
           "--benchmark-warmup=on", "--benchmark-warmup-iterations=1"]
    if req.quick:
        cmd += ["--arvid-quick", "--benchmark-max-time=0.2", "--benchmark-min-rounds=3"]
    if req.select:
        cmd += ["-k", req.select]
    return cmd


def child_env(device: torch.device) -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["ARVID_BENCH"] = "1"
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["ARVID_ATTENTION_BACKEND"] = "pytorch"
    elif device.index is not None:
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[device.index] if device.index < len(visible) else str(device.index)
    return env


def check_returncode(rc: int, json_path: Path, req: BenchRequest, log: Path | None = None) -> None:
    if rc == 5:
        raise ArvidError(f"no benchmark matched in suite {req.suite!r}"
                         + (f" with -k {req.select!r}" if req.select else ""))
    if rc not in (0, 1) or not json_path.is_file():
        raise ArvidError(f"the benchmark run stopped (pytest exit code {rc}) before writing results; "
                         + (f"its output is in {log}" if log is not None else "see its output above"))


def junit_cases(xml_path: Path) -> list[tuple[str, str, str]]:
    """(test name, passed | skipped | failed, reason) for each case pytest ran."""
    if not xml_path.is_file():
        return []
    cases = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        status, reason = "passed", ""
        for child in case:
            if child.tag == "skipped":
                status, reason = "skipped", child.get("message", "")
            elif child.tag in ("failure", "error"):
                status, reason = "failed", child.get("message", "")
        cases.append((case.get("name", "?"), status, reason))
    return cases


# ---- the device ---------------------------------------------------------------------------------


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        index = device.index or 0
        props = torch.cuda.get_device_properties(index)
        return {"type": "cuda", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return {"type": "cpu", "name": f"{cpu_name()} ({os.cpu_count()} cores)", "cores": os.cpu_count()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def run_info(req: BenchRequest, info: dict, cases, wall: float) -> dict:
    cmd = f"arvid bench {req.suite}" + (" --quick" if req.quick else "") + f" --device {req.device} --out {req.out}"
    if req.select:
        cmd += f" -k {req.select!r}"
    return {
        "command": cmd, "suite": req.suite, "quick": req.quick, "device": info, "wall_s": round(wall, 1),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {"arvid": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "cases": Counter(status for _, status, _ in cases),
        "skipped": dict(Counter(reason for _, status, reason in cases if status == "skipped")),
        "failed": [name for name, status, _ in cases if status == "failed"],
    }


# ---- figures and baselines ------------------------------------------------------------------------


@dataclass
class Row:
    """One benchmark's result, its figure and how it compares with its group's baseline."""

    group: str
    name: str
    function: str  # the benchmark function, without parameters
    params: dict
    extra: dict
    seconds: float  # median per call
    value: float
    unit: str
    higher_better: bool
    baseline: "Row | None" = None
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio compares: the figure's unit, or "time per call" where units differ

    @property
    def is_baseline(self) -> bool:
        return self.baseline is self


def figure(extra: dict, seconds: float) -> tuple[float, str, bool]:
    """(value, unit, higher is better) of one result."""
    for key, unit, scale, higher in FIGURES:
        if isinstance(extra.get(key), (int, float)):
            return float(extra[key]) * scale, unit, higher
    for key, unit in COUNTS:
        if isinstance(extra.get(key), (int, float)) and seconds > 0:
            return float(extra[key]) / seconds, unit, True
    return seconds * 1e3, "ms", False


def rows_from(data: dict) -> list[Row]:
    rows = []
    for b in data.get("benchmarks", []):
        extra, seconds = b.get("extra_info") or {}, float(b["stats"]["median"])
        if isinstance(extra.get("ms"), (int, float)) and extra["ms"] > 0:  # a round of several calls
            seconds = extra["ms"] / 1e3
        rows.append(Row(b.get("group") or b["name"], b["name"], b["name"].split("[")[0], b.get("params") or {},
                        extra, seconds, *figure(extra, seconds)))
    for group in groups(rows).values():
        compare(group)
    return rows


def groups(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r.group, []).append(r)
    return out


def pick_baseline(rows: list[Row]) -> Row | None:
    if len(rows) < 2:
        return None
    marked = [r for r in rows if r.extra.get("baseline") is True]
    if marked:
        return marked[0]
    for r in rows:
        text = f"{r.name} {r.extra.get('impl', '')}".lower()
        if any(hint in text for hint in BASELINE_HINTS):
            return r
    for key in rows[0].params:
        values = [r.params.get(key) for r in rows]
        if all(isinstance(v, (int, float)) for v in values) and len(set(values)) > 1:
            return min(rows, key=lambda r: r.params[key])
    return None


def compare(rows: list[Row]) -> None:
    base = pick_baseline(rows)
    if base is None:
        return
    for r in rows:
        r.baseline = base
        if r.unit == base.unit and r.value > 0 and base.value > 0:
            r.ratio = r.value / base.value if r.higher_better else base.value / r.value
            r.ratio_of = r.unit
        elif r.seconds > 0:
            r.ratio = base.seconds / r.seconds
            r.ratio_of = "time per call"


# ---- the summary ------------------------------------------------------------------------------------


def fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:.3g}"


def device_of(row: Row, run_device: dict) -> str:
    name = row.extra.get("device")
    if name in (None, "cpu") and run_device["type"] == "cpu":
        return run_device["name"]
    return name or "not recorded"


def also(row: Row) -> str:
    """Secondary figures: the other known rates, fraction of peak, the cache size."""
    parts = [f"{fmt(float(row.extra[k]) * s)} {u}" for k, u, s, _ in FIGURES
             if isinstance(row.extra.get(k), (int, float)) and u != row.unit]
    if isinstance(row.extra.get("fraction_of_peak_bandwidth"), (int, float)):
        parts.append(f"{row.extra['fraction_of_peak_bandwidth']:.0%} of peak bandwidth")
    if isinstance(row.extra.get("batch"), int) and row.extra["batch"] > 1:
        parts.append(f"batch {row.extra['batch']}")
    return ", ".join(parts)


def group_table(rows: list[Row], run_device: dict) -> list[str]:
    memory = any("peak_memory_bytes" in r.extra for r in rows)
    warmup = any(isinstance(r.extra.get("warmup_s"), (int, float)) for r in rows)
    head = ["case", "figure", "baseline figure", "figure vs baseline", "time per call"]
    head += ["peak memory", "memory vs baseline"] if memory else []
    head += ["warm-up"] if warmup else []
    head += ["also", "device"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        base = r.baseline
        cells = [f"`{r.name}`" + (" (baseline)" if r.is_baseline else ""), f"{fmt(r.value)} {r.unit}",
                 f"{fmt(base.value)} {base.unit}" if base else "—",
                 ratio_cell(r), f"{fmt(r.seconds * 1e3)} ms"]
        if memory:
            cells += memory_cells(r)
        if warmup:
            w = r.extra.get("warmup_s")
            cells.append(f"{fmt(w)} s" if isinstance(w, (int, float)) else "—")
        cells += [also(r) or "—", device_of(r, run_device)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio_cell(r: Row) -> str:
    """The ratio, and what it compares where that is not the figure itself (its time per call)."""
    if r.ratio is None:
        return "—"
    return f"{r.ratio:.2f}×" + (f" ({r.ratio_of})" if r.ratio_of and r.ratio_of != r.unit else "")


def memory_cells(r: Row) -> list[str]:
    mem = r.extra.get("peak_memory_bytes")
    if not isinstance(mem, (int, float)):
        return ["—", "—"]
    base = (r.baseline.extra.get("peak_memory_bytes") if r.baseline else None)
    delta = (f"{(mem - base) / 2**20:+.2f} MiB ({mem / base:.2f}× the baseline's)"
             if isinstance(base, (int, float)) and base > 0 else "—")
    return [f"{mem / 2**20:,.1f} MiB ({r.extra.get('memory_kind', 'peak')})", delta]


def summary_markdown(data: dict, rows: list[Row], plots: list[str]) -> str:
    run = data["arvid"]
    dev, ver, cases = run["device"], run["versions"], run["cases"]
    lines = [f"# arvid bench: {run['suite']}{' (quick)' if run['quick'] else ''}", "",
             f"- device: **{dev['name']}**" + (f", {dev['memory_gib']} GiB" if "memory_gib" in dev else "")
             + (" (CPU run: one torch thread, CUDA-only cases skipped, the PyTorch attention paths timed, "
               "no Triton interpreter)"
                if dev["type"] == "cpu" else ""),
             f"- software: arvid {ver['arvid']}, torch {ver['torch']}, python {ver['python']}",
             f"- run: {run['date']}, {len(rows)} timed, {cases.get('skipped', 0)} skipped, "
             f"{cases.get('failed', 0)} failed, {run['wall_s']:.0f} s wall",
             f"- command: `{run['command']}`", "",
             "Figures are medians over the timed rounds, after warm-up (the first call, which holds any "
             "compile time, is reported apart where a benchmark records it). Each figure is compared with "
             "the baseline of its group, measured in the same run: \"figure vs baseline\" > 1 is better than the "
             "baseline (more throughput, or less time); memory is compared apart, as the difference from the "
             "baseline's and their ratio.", ""]
    for name, group in groups(rows).items():
        base = group[0].baseline
        lines += [f"## {name}", "", f"baseline: `{base.name}`" if base else "no baseline in this group", ""]
        lines += group_table(group, dev) + [""]
    if run["skipped"]:
        lines += ["## Skipped", ""] + [f"- {n} × {reason}" for reason, n in run["skipped"].items()] + [""]
    if run["failed"]:
        lines += ["## Failed", ""] + [f"- `{name}`" for name in run["failed"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p[:-4].replace('_', ' ')}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def terminal_summary(rows: list[Row], width: int = 100) -> list[str]:
    """A few short lines for the terminal: per group its name, then per case the figure with its unit, against
    the baseline (what the ratio compares) and the peak memory where measured. The full tables are in summary.md."""
    lines = ["each case: its figure, then the figure against its group's baseline (> 1: better)"]
    for name, group in groups(rows).items():
        lines.append(textwrap.shorten(name, width, placeholder="..."))
        for r in group:
            case = r.name if len(r.name) <= 48 else r.name[:45] + "..."
            text = f"  {case:<48} {fmt(r.value):>8} {r.unit}"
            if r.is_baseline:
                text += " (baseline)"
            elif r.ratio is not None:
                text += f", {r.ratio:.2f}× vs baseline" + (f" ({r.ratio_of})" if r.ratio_of != r.unit else "")
            mem = r.extra.get("peak_memory_bytes")
            if isinstance(mem, (int, float)):
                text += f", {mem / 2**20:,.0f} MiB peak"
            lines.append(text)
    return lines


# ---- plots ----------------------------------------------------------------------------------------


def length_of(row: Row) -> tuple[str, float] | None:
    for key in LENGTH_KEYS:
        v = row.params.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return key, float(v)
    return None


def throughput(row: Row) -> tuple[float, str] | None:
    """The first higher-is-better figure of a row."""
    if row.higher_better:
        return row.value, row.unit
    for key, unit, scale, higher in FIGURES:
        if higher and isinstance(row.extra.get(key), (int, float)):
            return float(row.extra[key]) * scale, unit
    return None


def line_label(row: Row, length_key: str) -> str:
    skip = {length_key, "B"}  # B: the sweeps keep B·length fixed, so B follows the length
    return ", ".join(f"{k}={v}" for k, v in row.params.items() if k not in skip) or row.function


def families(rows: list[Row], value) -> dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]]:
    """(function, length key, unit) -> line label -> [(length, value)], for sweeps of >= 2 lengths.

    value(row) gives (figure, unit) or None."""
    out: dict[tuple, dict[str, list]] = {}
    for r in rows:
        length, v = length_of(r), value(r)
        if length is None or v is None:
            continue
        key = (family_title(rows, r.function), length[0], v[1])
        out.setdefault(key, {}).setdefault(line_label(r, length[0]), []).append((length[1], v[0]))
    return {k: lines for k, lines in out.items() if len({x for pts in lines.values() for x, _ in pts}) >= 2}


def family_title(rows: list[Row], function: str) -> str:
    """The group name when one function fills one group, else the function's name."""
    names = {r.group for r in rows if r.function == function}
    return names.pop() if len(names) == 1 else function.removeprefix("bench_")


def new_figure(panels: int, height: float = 3.4):
    from matplotlib.figure import Figure

    cols = min(3, panels)
    rows = -(-panels // cols)
    fig = Figure(figsize=(4.8 * cols, height * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]


def draw_lines(ax, lines: dict, title: str, ylabel: str, xlabel: str) -> None:
    xs = [x for pts in lines.values() for x, _ in pts]
    for label, pts in sorted(lines.items()):
        pts = sorted(pts)
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
    if max(xs) / max(min(xs), 1e-9) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.15 * max(y for pts in lines.values() for _, y in pts))
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(textwrap.fill(title, 42), fontsize=9)  # a long group name wraps instead of running off
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=7)


def plot_throughput_vs_length(rows: list[Row], path: Path, device: str) -> bool:
    fams = families(rows, throughput)
    if not fams:
        return False
    fig, axes = new_figure(len(fams))
    for ax, ((name, xkey, unit), lines) in zip(axes, fams.items()):
        draw_lines(ax, lines, name, unit, LENGTH_LABELS.get(xkey, xkey))
    fig.suptitle(f"throughput against length — {device}", fontsize=10)
    save(fig, path)
    return True


def plot_vs_baseline(rows: list[Row], path: Path, device: str) -> bool:
    # the case in full, its group shortened: the label names the bar without running off the figure
    pairs = [(f"{textwrap.shorten(r.group, 40, placeholder='...')}: {r.name}", r.ratio)
             for r in rows if r.ratio and not r.is_baseline]
    if not pairs:
        return False
    labels, ratios = zip(*pairs)
    fig, (ax,) = new_figure(1, height=1.3 + 0.32 * len(pairs))
    fig.set_figwidth(6 + 0.075 * max(map(len, labels)))  # the labels' room, then the bars'
    ax.set_xlim(min(min(ratios), 0.5) / 1.5, max(max(ratios), 2.0) * 2.5)  # room for each bar's figure
    ax.barh(range(len(pairs)), ratios, color=["tab:green" if v >= 1 else "tab:red" for v in ratios])
    ax.set_yticks(range(len(pairs)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    for i, v in enumerate(ratios):
        ax.annotate(f"{v:.2f}×", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set(xlabel="figure against the group's baseline, × (> 1: better)")
    fig.suptitle(f"arvid against the baseline of each group\n{device}", fontsize=10)
    save(fig, path)
    return True


def plot_clip_length(rows: list[Row], path: Path, device: str) -> bool:
    def ms(r):
        v = r.extra.get("seconds_per_latent_frame")
        return (v * 1e3, "time per latent frame (ms)") if isinstance(v, (int, float)) else None

    def mib(r):
        v = r.extra.get("peak_memory_bytes")
        kind = r.extra.get("memory_kind", "peak memory")
        return (v / 2**20, f"{kind} (MiB)") if isinstance(v, (int, float)) else None

    panels = [*families(rows, ms).items(), *families(rows, mib).items()]
    if not panels:
        return False
    fig, axes = new_figure(len(panels))
    for ax, ((name, xkey, unit), lines) in zip(axes, panels):
        draw_lines(ax, lines, name, unit, LENGTH_LABELS.get(xkey, xkey))
    fig.suptitle(f"cost per latent frame against clip length — {device}", fontsize=10)
    save(fig, path)
    return True


PLOTS = (("throughput_vs_length.png", plot_throughput_vs_length), ("vs_baseline.png", plot_vs_baseline),
         ("clip_length.png", plot_clip_length))


def save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)


# ---- writing ----------------------------------------------------------------------------------------


def write_report(out: Path, data: dict) -> list[Path]:
    """Write the JSON, the plots and the summary into out; return the paths written."""
    rows = rows_from(data)
    device = data["arvid"]["device"]["name"]
    written = [out / JSON_NAME]
    atomic_write_text(out / JSON_NAME, json.dumps(data, indent=1) + "\n")
    plots = []
    for name, plot in PLOTS:
        if plot(rows, out / name, device):
            plots.append(name)
            written.append(out / name)
        elif (out / name).exists():  # a stale plot from an earlier run would contradict the summary
            (out / name).unlink()
    atomic_write_text(out / SUMMARY_NAME, summary_markdown(data, rows, plots))
    written.append(out / SUMMARY_NAME)
    return written
