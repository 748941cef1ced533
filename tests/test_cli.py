"""The `arvid` command as a new user would try it: --help, info, data, and bad input."""

import json
import os
import subprocess
import sys

import pytest

from arvid.cli.main import main


def run_cli(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "arvid", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_help_lists_the_commands():
    out = run_cli("--help")
    for command in ("info", "data"):
        assert command in out.stdout
    assert "usage: arvid" in out.stdout


def test_no_command_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "usage: arvid" in capsys.readouterr().out


def test_info_json_is_parseable_and_names_the_attention_path():
    info = json.loads(run_cli("info", "--json").stdout)
    assert info["packages"]["torch"]
    assert info["device"]["default"] in ("cpu", "cuda")
    assert info["attention"]["backend"] in ("triton", "triton-interpreter", "pytorch")
    assert isinstance(info["device"]["cpu_bf16"], bool)  # whether --bf16 pays off for CPU training
    assert "default_model" in info


def test_info_shows_a_default_models_recommended_decoding(tmp_path, monkeypatch):
    import shutil

    import arvid.info

    root = tmp_path / "default"
    shutil.copytree(arvid.info.DEFAULT_MODEL_DIR, root)
    monkeypatch.setattr(arvid.info, "DEFAULT_MODEL_DIR", root)
    (root / "sampling.json").unlink(missing_ok=True)
    assert "sampling" not in arvid.info.default_model_info()  # a model without sampling.json recommends nothing
    (root / "sampling.json").write_text('{"guidance": 3.0}')
    assert arvid.info.default_model_info()["sampling"] == {"guidance": 3.0}


def test_info_table_reads_like_a_report():
    out = run_cli("info").stdout
    assert "attention:" in out and "device:" in out and "torch" in out
    assert "native bf16" in out or "cuda:" in out


def test_data_writes_clips_labels_and_a_contact_sheet(tmp_path, capsys):
    out = tmp_path / "mm"
    assert main(["data", "moving-mnist", "--frames", "6", "--count", "2", "--out", str(out), "--format", "npy"]) == 0
    assert sorted(os.listdir(out)) == ["labels.json", "sample_000.npy", "sample_001.npy", "sheet.png"]
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels["sample_000.npy"]) == 2 and all(d in "0123456789" for d in labels["sample_000.npy"])
    assert "wrote 2 moving-mnist clips" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["data", "shapes", "--out", "/nonexistent-parent/x"], "does not exist"),
    (["data", "shapes", "--out", "OUT", "--count", "0"], "--count"),
    (["data", "folder", "--out", "OUT"], "needs a path"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    out = run_cli(*args, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arvid: error:") and message in lines[0]
    assert "Traceback" not in out.stderr
