"""A new user's first hour: threads chosen for the work, a light quick start that CI follows, every command
ready without flags (tokenize's model, resume's options), what `info` says, gray video kept gray."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arvid.cli.main import main
from arvid.kernels import use_backend
from arvid.utils import threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def pytorch_attention():
    with use_backend("pytorch"):  # the Triton interpreter has tests of its own
        yield


# ---------------------------------------------------------------- threads


def test_thread_choice_follows_the_work_the_request_and_the_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0)
    assert threads.choose(threads.SMALL_STEPS) == 1  # a token's decode step has nothing to split
    assert threads.choose(threads.PARALLEL) == 2  # an idle machine: every core
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1)
    assert threads.choose(threads.PARALLEL) == 1  # one core taken by another process: the other one
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 5)
    assert threads.choose(threads.PARALLEL) == 1
    assert threads.choose(threads.SMALL_STEPS, 3) == 3  # asked for
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose(threads.SMALL_STEPS) == 2  # the environment's word wins over the choice
    with pytest.raises(Exception, match="--threads must be a whole number"):
        threads.choose(threads.PARALLEL, 0)


def test_a_spinning_process_counts_as_busy():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert threads.busy_elsewhere() >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_generation_sets_its_threads_and_gives_the_callers_back(monkeypatch):
    from arvid import Arvid

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    model = Arvid.from_pretrained(device="cpu")
    seen = []
    decode = model.generator.decode
    model.generator.decode = lambda *a, **k: seen.append(torch.get_num_threads()) or decode(*a, **k)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        frames = model.stream(3, labels=[3, 7])
        next(frames)
        assert torch.get_num_threads() == 2  # between frames the caller's setting holds
        assert set(seen) == {1}  # the raster model's token steps ran on one thread
        seen.clear()
        model.threads = 2
        list(model.stream(1))
        assert set(seen) == {2}
    finally:
        model.generator.decode = decode
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the quick start and CI


def _section(text: str, heading: str) -> str:
    """The README's section under `heading`, up to the next heading of the same level."""
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def _fenced_commands(text: str) -> list[str]:
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_quick_start_installs_only_what_generate_needs_and_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    quick = _section(readme, "## Quick start")
    first, *rest = _fenced_commands(quick)
    assert first.startswith("pip install torch==2.13.0 && pip install -e . && arvid generate")
    assert "[test]" not in first  # the test stack (scikit-learn, OpenCV, matplotlib...) comes second
    tests = [c for c in rest if "pytest" in c]
    assert tests == ['pip install -e ".[test]" && python -m pytest']
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert first in ci and tests[0] in ci  # CI follows the README: the same two commands
    assert ci.index(first) < ci.index(tests[0])


def test_the_quick_start_sheet_is_what_the_quick_start_command_makes(tmp_path, monkeypatch):
    """The README's picture comes from its own command (same seed, same model), so its text can be checked
    against it by eye; regenerate docs/images/quickstart-sheet.png with that command when the model changes."""
    import shlex

    import cv2

    readme = (ROOT / "README.md").read_text()
    quick = _section(readme, "## Quick start")
    command = _fenced_commands(quick)[0].split("&&")[-1].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["arvid", "generate"] and "--sheet" in argv
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 0
    made = cv2.imread(argv[argv.index("--sheet") + 1])
    shown = cv2.imread(str(ROOT / "docs" / "images" / "quickstart-sheet.png"))
    assert made is not None and shown is not None and made.shape == shown.shape
    # the frames must match; the captions' font rendering may differ a little between OpenCV builds
    differ = np.abs(made.astype(np.int16) - shown.astype(np.int16)).max(axis=-1) > 8
    assert differ.mean() < 0.005, f"{differ.mean():.2%} of the sheet's pixels differ from the README's picture"


def test_the_packages_generate_needs_are_the_base_install():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(cfg["dependencies"])
    for module in ("matplotlib", "sklearn", "hypothesis", "mlxtend"):
        assert module not in base
    # and generating imports none of them
    code = ("import sys, arvid; arvid.Arvid.from_pretrained(device='cpu').generate(1); "
            "print(sorted(m for m in ('matplotlib', 'mlxtend', 'sklearn', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"ARVID_ATTENTION_BACKEND": "pytorch", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- commands ready without flags


def test_tokenize_and_detokenize_use_the_shipped_tokenizer_by_default(tmp_path, capsys):
    from arvid.data import make_dataset

    np.save(tmp_path / "clip.npy", make_dataset("moving-mnist", frames=16, size=64, split="eval", seed=0)[0].video)
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "c.npz")]) == 0
    assert main(["detokenize", str(tmp_path / "c.npz"), "--out", str(tmp_path / "back.npy")]) == 0
    assert np.load(tmp_path / "back.npy").shape == (16, 64, 64, 1)
    # a model folder (tokenizer/ and generator/) works as --model too
    from arvid.pipeline import DEFAULT_MODEL_DIR

    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(DEFAULT_MODEL_DIR), "--out",
                 str(tmp_path / "d.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "c.npz")["codes"], np.load(tmp_path / "d.npz")["codes"])


def test_resume_takes_the_runs_options_refuses_a_changed_one_and_extends_the_steps(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "toy", "--out", out, "--steps", "2", "--lr", "0.01", "--batch-size", "4", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "toy", "--out", out, "--resume", "--steps", "4", "--threads", "1"]) == 0
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["train_config"]["lr"] == 0.01 and state["train_config"]["batch_size"] == 4
    said = capsys.readouterr().out  # the longer schedule is the one change, and the run says so
    assert "changed settings (steps)" in said
    assert main(["train", "toy", "--out", out, "--resume", "--steps", "5", "--lr", "0.02"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.02 (the run has 0.01)" in err and err.count("\n") == 1


def test_info_shows_the_settings_of_the_quantizer_in_use(capsys):
    assert main(["info", "--json"]) == 0
    tok = json.loads(capsys.readouterr().out)["default_model"]["tokenizer"]
    assert tok["kind"] == "layered" and tok["layers"] == 2 and tok["frames_per_latent"] == 16
    ref = tok["reference"]  # the conv tokenizer that codes the reference picture
    assert ref["quantizer"] == "fsq" and ref["codebook_size"] == 240 and ref["levels"] == [8, 6, 5]
    assert tok["codebook_size"] == 240 + 64 + 1  # and the positions 0..63, and "absent"
    assert "num_codes" not in ref and "vq_dim" not in ref


def test_info_says_which_decoding_kind_the_generator_is(capsys):
    assert main(["info"]) == 0
    assert re.search(r"generator: .*decoding=(raster|masked)", capsys.readouterr().out)


# ---------------------------------------------------------------- gray video


def test_generated_gray_video_extends_as_gray_and_extend_says_what_is_reencoded(tmp_path, capsys):
    assert main(["generate", "--frames", "3", "--out", str(tmp_path / "clip.mp4")]) == 0
    from arvid.video import read_video

    assert read_video(tmp_path / "clip.mp4").channels == 1  # written as H.264 4:0:0, read back gray
    capsys.readouterr()
    assert main(["extend", str(tmp_path / "clip.mp4"), "--frames", "2", "--out", str(tmp_path / "more.npy")]) == 0
    assert "converted colour to grayscale" not in capsys.readouterr().err
    assert main(["extend", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "encodes the input's frames again" in help_text and ".npy and png-folder outputs keep them exactly" in help_text
