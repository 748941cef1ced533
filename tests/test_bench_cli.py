"""`arvid bench`: one small suite run end to end, the report built from known results, bad input."""

import json
import re

import pytest
import torch

from arvid.benchmark import child_env, rows_from, terminal_summary, write_report
from arvid.cli.main import main


def test_bench_runs_a_suite_end_to_end(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["bench", "generation", "--quick", "--device", "cpu", "-k", "throughput", "--out", str(out)]) == 0
    data = json.loads((out / "benchmark.json").read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["bench_throughput[batch 1]", "bench_throughput[larger batch]"]
    assert all(b["stats"]["rounds"] >= 3 for b in data["benchmarks"])  # timed, not disabled
    assert data["arvid"]["device"]["type"] == "cpu" and data["arvid"]["quick"] is True
    summary = (out / "summary.md").read_text()
    assert data["arvid"]["device"]["name"] in summary
    assert re.search(r"\| \d[\d,.]* frames/s \| \d[\d,.]* frames/s \| \d+\.\d\d× \|", summary)
    assert "baseline: `bench_throughput[batch 1]`" in summary
    assert (out / "vs_baseline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    shown = capsys.readouterr().out
    assert str(out / "summary.md") in shown and str(out / "pytest.log") in shown
    # the terminal: progress and a short summary with units; pytest-benchmark's wide tables go to the log
    assert max(len(x) for x in shown.splitlines() if str(out) not in x) <= 120
    assert "bench_throughput[larger batch]" in shown and re.search(r"^2 passed.* in ", shown, re.M)
    assert re.search(r"frames/s, \d+\.\d\d× vs baseline", shown)
    assert "Mean" in (out / "pytest.log").read_text() and "Mean" not in shown


def result(name, group, median, params=None, **extra):
    return {"name": name, "group": group, "params": params or {}, "extra_info": extra,
            "stats": {"median": median, "mean": median, "rounds": 5}}


def report_data(benchmarks, device_type="cpu"):
    return {"benchmarks": benchmarks, "arvid": {
        "command": "arvid bench all", "suite": "all", "quick": False, "wall_s": 1.0, "date": "today",
        "device": {"type": device_type, "name": "Test CPU (2 cores)"},
        "versions": {"arvid": "0", "torch": "0", "python": "3"},
        "cases": {"passed": len(benchmarks), "skipped": 1}, "skipped": {"needs a CUDA GPU": 1}, "failed": []}}


KNOWN = [
    # kernels: the sdpa case is the baseline by name; figures recorded by the benchmark
    result("bench_prefill[arvid-256]", "prefill", 0.5, {"impl": "arvid", "L": 256}, tflops=2.0, ms=0.1),
    result("bench_prefill[sdpa-256]", "prefill", 0.5, {"impl": "sdpa", "L": 256}, tflops=1.0, ms=0.2),
    result("bench_prefill[arvid-1024]", "prefill 1024", 0.5, {"impl": "arvid", "L": 1024}, tflops=3.0),
    result("bench_prefill[sdpa-1024]", "prefill 1024", 0.5, {"impl": "sdpa", "L": 1024}, tflops=4.0),
    # a time per latent frame (lower is better) with memory; the baseline marked explicitly
    result("bench_clip[16]", "clip", 0.010, {"frame": 16}, seconds_per_latent_frame=0.010,
           peak_memory_bytes=100 * 2**20, baseline=True),
    result("bench_clip[1024]", "clip", 0.020, {"frame": 1024}, seconds_per_latent_frame=0.020,
           peak_memory_bytes=101 * 2**20),
    # no recorded figure: frames/s from a count; the whole-clip case is the baseline by name
    result("bench_encode_streaming", "encode", 0.5, frames=10),
    result("bench_encode_whole", "encode", 0.25, frames=10),
    # a lone case has no baseline
    result("bench_alone", "alone", 0.003),
]


def test_ratios_compare_each_figure_with_its_groups_baseline():
    rows = {r.name: r for r in rows_from(report_data(KNOWN))}
    assert rows["bench_prefill[arvid-256]"].ratio == pytest.approx(2.0)  # 2 TFLOP/s against 1
    assert rows["bench_prefill[arvid-256]"].seconds == pytest.approx(1e-4)  # ms recorded per call wins
    assert rows["bench_prefill[arvid-1024]"].ratio == pytest.approx(0.75)
    assert rows["bench_prefill[sdpa-1024]"].is_baseline
    assert rows["bench_clip[1024]"].ratio == pytest.approx(0.5)  # twice the time: half as good
    assert rows["bench_clip[1024]"].unit == "ms/latent frame"
    assert rows["bench_encode_streaming"].value == pytest.approx(20.0)  # 10 frames in 0.5 s
    assert rows["bench_encode_streaming"].ratio == pytest.approx(0.5)
    assert rows["bench_encode_whole"].is_baseline
    assert rows["bench_alone"].ratio is None and rows["bench_alone"].unit == "ms"


def test_report_writes_summary_plots_and_json(tmp_path):
    (tmp_path / "clip_length.png").write_bytes(b"stale")
    written = write_report(tmp_path, report_data(KNOWN))
    assert {p.name for p in written} == {"benchmark.json", "summary.md", "throughput_vs_length.png",
                                          "vs_baseline.png", "clip_length.png"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| `bench_prefill[arvid-256]` | 2.00 TFLOP/s | 1.00 TFLOP/s | 2.00× |" in summary
    assert "+1.00 MiB" in summary  # memory at frame 1,024 against frame 16
    assert "Test CPU (2 cores)" in summary and "1 × needs a CUDA GPU" in summary
    assert "no baseline in this group" in summary
    assert (tmp_path / "clip_length.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "benchmark.json").read_text())["arvid"]["suite"] == "all"


def test_every_figure_says_its_unit_and_what_a_ratio_compares(tmp_path):
    mixed = [result("bench_mem[256]", "memory", 2.0, {"frames": 256}, frames=32, peak_memory_bytes=100 * 2**20),
             result("bench_mem[1024]", "memory", 4.0, {"frames": 1024}, frames=128, peak_memory_bytes=100 * 2**20),
             result("bench_other_whole", "mixed", 0.5, frames=10), result("bench_other_alone", "mixed", 0.25)]
    rows = rows_from(report_data(KNOWN + mixed))
    write_report(tmp_path, report_data(KNOWN + mixed))
    summary = (tmp_path / "summary.md").read_text()
    assert "| figure vs baseline |" in summary and "| ratio |" not in summary
    assert "+0.00 MiB (1.00× the baseline's)" in summary  # memory compared apart from the frames/s ratio
    assert "2.00× (time per call)" in summary  # units differ: the ratio says it compares time
    lines = terminal_summary(rows)
    assert max(map(len, lines)) <= 120
    assert any("bench_prefill[arvid-256]" in x and "2.00 TFLOP/s, 2.00× vs baseline" in x for x in lines)
    assert any("bench_mem[1024]" in x and "frames/s" in x and "MiB peak" in x for x in lines)
    assert any("bench_alone" in x and " ms" in x for x in lines)


def test_report_without_sweeps_or_baselines_drops_stale_plots(tmp_path):
    (tmp_path / "clip_length.png").write_bytes(b"stale")
    written = write_report(tmp_path, report_data([result("bench_alone", "alone", 0.003)]))
    assert {p.name for p in written} == {"benchmark.json", "summary.md"}
    assert not (tmp_path / "clip_length.png").exists()


@pytest.mark.parametrize("args, message", [
    (["bench", "everything"], "unknown benchmark suite 'everything'"),
    (["bench", "kernels", "--device", "tpu"], "unknown device"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unwritable_out_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["bench", "tokenizer", "--out", str(blocker / "results")]) == 2
    assert "cannot write benchmark results" in capsys.readouterr().err


def test_child_runs_without_the_interpreter_and_sees_only_the_chosen_device(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    env = child_env(torch.device("cpu"))
    assert "TRITON_INTERPRET" not in env and env["ARVID_BENCH"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["ARVID_ATTENTION_BACKEND"] == "pytorch"
    assert child_env(torch.device("cuda", 1))["CUDA_VISIBLE_DEVICES"] == "5"
