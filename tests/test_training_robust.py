"""Training that never loses its work and shows how it goes: a stop signal (Ctrl-C, SIGTERM, SIGHUP) saves the
step reached and resumes bit for bit; checkpoints by the clock; a killed token build is cleaned by the next run;
recipes and their TOML files; rules stated with their numbers; log.csv, preview.png and `arvid train plot`."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import arvid.train as train_pkg
from arvid.cli.main import main
from arvid.train import TrainConfig, latest_checkpoint, train
from arvid.train import trainer as trainer_module
from arvid.train.preview import is_arvid_picture
from arvid.train.runlog import read_log
from arvid.train.stop import StopNow, StopRequests
from arvid.train.toy import ToyTask
from arvid.train.tokens import write_token_dataset
from cli_cases import listing, no_temporaries, refused, run

TOKENIZER = ["--preset", "tiny", "--dataset", "shapes", "--size", "16", "--frames", "3", "--batch-size", "2",
             "--device", "cpu", "--threads", "1", "--ckpt-every", "1000", "--eval-every", "1000"]
GENERATOR = ["--preset", "tiny", "--batch-size", "2", "--device", "cpu", "--threads", "1", "--ckpt-every", "1000",
             "--eval-every", "1000", "--eval-windows", "2"]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ARVID_ATTENTION_BACKEND": "pytorch"}


@pytest.fixture(autouse=True)
def pytorch_attention():
    """The children run the PyTorch attention (CHILD_ENV); so does this process, for the same bits, and fast."""
    from arvid.kernels import use_backend

    with use_backend("pytorch"):
        yield


def _default_sigint() -> None:
    """In the child: the signals these tests send, back to their defaults. A child inherits a signal its parent
    ignores, and the suite's own process may ignore some: SIGINT in a background job, SIGHUP under nohup."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def stop_after_progress(argv: list, sig: int, pattern: bytes, kill_timeout: float = 120) -> tuple[int, list[str]]:
    """Run `arvid ARGV` in a child until its stderr matches `pattern`, send `sig`; -> (exit code, stderr lines)."""
    proc = subprocess.Popen([sys.executable, "-m", "arvid", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=CHILD_ENV, preexec_fn=_default_sigint)
    seen, deadline = b"", time.monotonic() + kill_timeout
    try:
        while not re.search(pattern, seen):
            assert time.monotonic() < deadline, seen[-2000:]
            if select.select([proc.stderr], [], [], 1.0)[0]:
                chunk = os.read(proc.stderr.fileno(), 65536)
                assert chunk, f"arvid exited ({proc.wait()}) first: {seen[-2000:]!r}"
                seen += chunk
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=kill_timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, [s.strip() for s in re.split(r"[\r\n]", (seen + rest).decode()) if s.strip()]


def bar_past(kind: str, step: int, total: int) -> bytes:
    return rf"train {kind}:[^\r\n]*\| *([{step}-9]|\d\d+)/{total}".encode()


def same_files(a: Path, b: Path, name: str) -> None:
    x, y = load_file(str(a / name)), load_file(str(b / name))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def saved_step(line: str, out: Path, kind: str) -> int:
    said = re.fullmatch(rf"arvid: interrupted: step (\d+) saved in {re.escape(str(out))}/checkpoints/step-(\d+); "
                        rf"continue with `arvid train {kind} --out {re.escape(str(out))} --resume`", line)
    assert said and int(said.group(1)) == int(said.group(2)), line
    return int(said.group(1))


# ---------------------------------------------------------------- a stop signal saves the step, resume is exact


def test_ctrl_c_saves_the_step_reached_and_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    steps = 200
    code, lines = stop_after_progress(["train", "tokenizer", "--out", tmp_path / "cut", "--steps", steps, *TOKENIZER],
                                      signal.SIGINT, bar_past("tokenizer", 3, steps))
    assert code == 130, lines[-3:]
    k = saved_step(lines[-1], tmp_path / "cut", "tokenizer")
    assert 3 <= k < steps and latest_checkpoint(tmp_path / "cut").name == f"step-{k:08d}"
    assert not any("Traceback" in s for s in lines)
    assert run(capsys, "train", "tokenizer", "--out", tmp_path / "cut", "--resume")[0] == 0
    assert run(capsys, "train", "tokenizer", "--out", tmp_path / "whole", "--steps", steps, *TOKENIZER)[0] == 0
    for name in ("model.safetensors", "optimizer.safetensors"):
        same_files(tmp_path / "whole", tmp_path / "cut", name)
    no_temporaries(tmp_path)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    clips = (rng.integers(0, 32, size=(12, 1, 4, 4)) + np.arange(8)[None, :, None, None]) % 32  # (12, 8, 4, 4)
    write_token_dataset(root / "train", clips[:10], rng.integers(0, 10, (10, 2)), vocab_size=32, num_classes=10)
    write_token_dataset(root / "eval", clips[10:], rng.integers(0, 10, (2, 2)), vocab_size=32, num_classes=10)
    return root


def test_sigterm_during_generator_training_saves_and_resumes_exactly(tokens, tmp_path, capsys):
    steps, data = 200, ["--tokens", tokens / "train", "--eval-tokens", tokens / "eval"]
    code, lines = stop_after_progress(["train", "generator", "--out", tmp_path / "cut", "--steps", steps, *data,
                                       *GENERATOR], signal.SIGTERM, bar_past("generator", 3, steps))
    assert code == 143, lines[-3:]
    assert 3 <= saved_step(lines[-1], tmp_path / "cut", "generator") < steps
    code, said = run(capsys, "train", "generator", "--out", tmp_path / "cut", "--resume")
    assert code == 0, said
    assert run(capsys, "train", "generator", "--out", tmp_path / "whole", "--steps", steps, *data, *GENERATOR)[0] == 0
    for name in ("model.safetensors", "optimizer.safetensors"):
        same_files(tmp_path / "whole", tmp_path / "cut", name)


def test_sighup_saves_too_with_its_exit_code(tmp_path):
    code, lines = stop_after_progress(["train", "tokenizer", "--out", tmp_path / "run", "--steps", 5000, *TOKENIZER],
                                      signal.SIGHUP, bar_past("tokenizer", 2, 5000))
    assert code == 129, lines[-3:]
    k = saved_step(lines[-1], tmp_path / "run", "tokenizer")
    assert latest_checkpoint(tmp_path / "run").name == f"step-{k:08d}"


class Signalling(ToyTask):
    """Sends itself `signals` (real ones, through the OS) while drawing the batch of step `at`."""

    def __init__(self, at: int, signals: tuple[int, ...]):
        super().__init__()
        self.at, self.signals = at, signals

    def batch(self, step, rank, world_size, batch_size, device):
        if step == self.at:
            for sig in self.signals:
                os.kill(os.getpid(), sig)
        return super().batch(step, rank, world_size, batch_size, device)


def _cfg(out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(out_dir=str(out), steps=20, batch_size=4, lr=1e-2, warmup_steps=2, ckpt_every=5,
                                 log_every=1, device="cpu"), **kw})


@pytest.fixture
def interruptible():
    """Ctrl-C as in a terminal: Python's own SIGINT handler, for tests that signal this process. A suite run as a
    background job starts with SIGINT ignored, and training leaves an ignored signal ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_second_signal_while_the_checkpoint_is_written_waits_for_it(tmp_path, monkeypatch, interruptible):
    real = trainer_module.save_checkpoint

    def impatient(*args, **kwargs):  # Ctrl-C twice more while the checkpoint is being written
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(trainer_module, "save_checkpoint", impatient)
    with pytest.raises(KeyboardInterrupt) as stopped:  # the first checkpoint (step 5) is written whole, then it stops
        train(ToyTask(), _cfg(tmp_path))
    assert stopped.value.exit_code == 130 and "step 5 saved in" in str(stopped.value)
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    assert load_file(str(latest_checkpoint(tmp_path) / "model.safetensors"))  # whole
    no_temporaries(tmp_path)
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_during_a_step_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, interruptible):
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(Signalling(at=7, signals=(signal.SIGTERM, signal.SIGINT)), _cfg(tmp_path))
    assert stopped.value.exit_code == 130  # the signal that stopped it
    assert "stopped at once" in str(stopped.value) and "checkpoint of step 5" in str(stopped.value)
    assert latest_checkpoint(tmp_path).name == "step-00000005"


def test_stop_requests_record_one_signal_and_hold_the_rest_while_saving():
    with StopRequests() as stop:
        assert not stop.requested
        stop._handle(signal.SIGTERM, None)
        assert stop.requested and stop.exit_code == 143
        with stop.holding():
            stop._handle(signal.SIGINT, None)  # waits: no exception
        with pytest.raises(StopNow) as now:
            stop._handle(signal.SIGINT, None)
        assert now.value.exit_code == 130


def test_checkpoints_by_the_clock(tmp_path, monkeypatch):
    clock = [0.0]

    class Slow(ToyTask):  # each step takes 40 s of a fake clock
        def batch(self, *args):
            clock[0] += 40
            return super().batch(*args)
    saved = []
    real = trainer_module.save_checkpoint
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(trainer_module, "save_checkpoint", lambda out, step, *a: saved.append(step) or real(out, step, *a))
    train(Slow(), _cfg(tmp_path / "a", steps=7, ckpt_every=1000, ckpt_minutes=1.0))
    assert saved == [2, 4, 6, 7]  # a minute passed at steps 2 (80 s), 4 (80 s later), 6; and the last step
    saved.clear()
    train(Slow(), _cfg(tmp_path / "b", steps=7, ckpt_every=1000))
    assert saved == [7]


# ---------------------------------------------------------------- the token build leaves nothing a next run keeps


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tok"
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "1", *TOKENIZER]) == 0
    return out


def test_a_killed_token_build_is_cleaned_by_the_next_run_and_user_files_stay(tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    build = ["train", "generator", "--out", out, "--tokenizer", tokenizer_dir, "--dataset", "shapes", "--size", 16,
             "--clip-frames", 11, "--eval-clips", 2, *GENERATOR]
    code, lines = stop_after_progress([*build, "--clips", 100_000, "--steps", 1], signal.SIGKILL, rb"tokenize:[^\r\n]*\| *[1-9]")
    assert code == -signal.SIGKILL
    stale = [p.name for p in out.iterdir()]
    assert len(stale) == 1 and re.fullmatch(r"\.tokens-train\.\w+\.tmp", stale[0]), stale  # what SIGKILL leaves
    mine = {".tokens-train.notes": b"user", "my.tmp": b"user", ".tokens-eval.txt": b"user"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    code, lines = stop_after_progress([*build, "--clips", 100_000, "--steps", 1], signal.SIGINT, rb"tokenize:[^\r\n]*\| *[1-9]")
    assert code == 130 and lines[-1] == "arvid: interrupted", lines[-3:]
    assert sorted(p.name for p in out.iterdir()) == sorted(mine)  # the stale build swept, this one removed itself
    assert run(capsys, *build, "--clips", 4, "--steps", 2, "--eval-every", 1)[0] == 0
    assert {name: (out / name).read_bytes() for name in mine} == mine
    assert {"tokens-train", "tokens-eval", "preview.png", "log.csv"} <= {p.name for p in out.iterdir()}
    assert is_arvid_picture(out / "preview.png", "training preview")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tokens-") and p.name.endswith(".tmp")]


# ---------------------------------------------------------------- recipes


@pytest.fixture
def captured(monkeypatch):
    """Replace the training itself: the command stops after building the task and settings, which it keeps."""
    seen = {}

    def fake(task, cfg):
        seen.update(task=task, cfg=cfg)
        return {"step": cfg.steps}
    monkeypatch.setattr(train_pkg, "train", fake)
    return seen


def test_cpu_hour_recipe_sets_the_run_and_flags_override_it(tmp_path, capsys, captured):
    code, _ = run(capsys, "train", "tokenizer", "--out", tmp_path / "run", "--recipe", "cpu-hour", "--steps", 7,
                  "--dataset", "shapes")
    assert code == 0
    task, cfg = captured["task"], captured["cfg"]
    assert (cfg.steps, cfg.batch_size, cfg.ckpt_every, cfg.ckpt_minutes, cfg.lr) == (7, 8, 250, 5.0, 1e-3)
    assert (task.frames, task.size, task.eval_every, task.config.width, task.config.spatial_factor) == (9, 64, 250, 32, 8)
    assert cfg.options["recipe"] == "cpu-hour" and cfg.options["dataset"] == "shapes"


def test_a_recipe_file_is_read_and_checked_key_by_key(tmp_path, capsys, captured):
    good = tmp_path / "mine.toml"
    good.write_text('[tokenizer]\npreset = "tiny"\nframes = 5\nsize = 32\nsteps = 3\nlr = 0.002\nckpt-minutes = 2\n'
                    'warp = true\n[generator]\nsteps = 9\n')
    assert run(capsys, "train", "tokenizer", "--out", tmp_path / "run", "--recipe", good, "--dataset", "shapes")[0] == 0
    task, cfg = captured["task"], captured["cfg"]
    assert (task.frames, task.size, cfg.steps, cfg.lr, cfg.ckpt_minutes, task.config.warp) == (5, 32, 3, 0.002, 2.0, True)
    bad = {
        '[tokenizer]\nframez = 5\n': "[tokenizer] 'framez' is not an option of this kind",
        '[tokenizer]\nframes = "5"\n': "[tokenizer] frames = '5': must be a whole number",
        '[tokenizer]\nlr = true\n': "[tokenizer] lr = True: must be a number",
        '[tokenizer]\npreset = "huge"\n': "[tokenizer] preset = 'huge': must be one of base, mnist, tiny",
        '[tokenizer]\nwarp = 1\n': "[tokenizer] warp = 1: must be true or false",
        '[tokenizer]\nout = "x"\n': "[tokenizer] 'out' is given per run",
        '[generator]\nsteps = 1\n': "has no [tokenizer] table",
        'steps = 1\n': "unknown table or key 'steps' at the top",
        '[tokenizer\n': "is not valid TOML",
        'tokenizer = 3\n': "tokenizer must be a table",
    }
    for text, said in bad.items():
        good.write_text(text)
        refused(capsys, "train", "tokenizer", "--out", tmp_path / "new", "--recipe", good, match=said)
    refused(capsys, "train", "tokenizer", "--out", tmp_path / "new", "--recipe", "cpu-day",
            match="--recipe 'cpu-day' is neither a recipe (cpu-hour, gpu) nor a .toml file")
    refused(capsys, "train", "toy", "--out", tmp_path / "new", "--recipe", "cpu-hour", match="unrecognized arguments")
    assert not (tmp_path / "new").exists()


def test_recipes_are_valid_for_their_kinds_and_listed_in_help(capsys):
    from arvid.cli.train import build_kind_parser
    from arvid.train.options import train_frames_minimum
    from arvid.train.recipes import RECIPES, recipe_values

    for kind in ("tokenizer", "generator"):
        parser = build_kind_parser(kind)
        for name, recipe in RECIPES.items():
            assert recipe_values(name, kind, parser) == recipe[kind]
            opts = parser.parse_args(["--out", "x", *(f"--{k.replace('_', '-')}={v}" for k, v in recipe[kind].items())])
            assert all(getattr(opts, k) == v for k, v in recipe[kind].items())
        assert main(["train", kind, "--help"]) == 0
        assert "cpu-hour: a small model on 64x64 frames" in " ".join(capsys.readouterr().out.split())
    g = RECIPES["cpu-hour"]["generator"]
    assert g["train_frames"] >= train_frames_minimum(g["window"], g["sinks"])
    assert g["train_frames"] <= 1 + (g["clip_frames"] - 1) // 2  # the clips (τ 2) hold the windows


# ---------------------------------------------------------------- rules with their numbers


def test_train_frames_rule_names_its_minimum_in_help_and_refusal(tokens, tmp_path, capsys):
    assert main(["train", "generator", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "6 (window 3 + sinks 1 + 2) for preset tiny; 9 (window 6 + sinks 1 + 2) for preset mnist" in text
    data = ["--tokens", tokens / "train", "--eval-tokens", tokens / "eval", "--out", tmp_path / "g", "--steps", 1]
    refused(capsys, "train", "generator", *data, *GENERATOR, "--train-frames", 5,
            match="--train-frames 5 is too short: windows need at least 6 latent frames for preset tiny "
                  "(window 3 + sinks 1 + 2)")
    refused(capsys, "train", "generator", *data, *GENERATOR, "--window", 6,
            match="the clips have 8 latent frames: windows need at least 9 latent frames for preset tiny (window 6")
    refused(capsys, "train", "generator", *data, *GENERATOR, "--train-frames", 9,
            match="--train-frames 9 must be between 1 and the clips' 8 latent frames")
    refused(capsys, "train", "generator", *data, *GENERATOR, "--eval-every", 0,
            match="--eval-every must be at least 1, got 0")  # the flag that is wrong, not another
    assert not (tmp_path / "g").exists()


def test_tokenizer_frames_size_and_clock_rules_give_the_valid_values(tmp_path, capsys):
    out = ["--out", tmp_path / "t", "--dataset", "shapes", "--steps", 1]
    refused(capsys, "train", "tokenizer", *out, "--frames", 8, match="--frames 8 does not fit the tokenizer: it takes "
            "1 + k·2 frames (τ = 2): give 7 or 9")
    refused(capsys, "train", "tokenizer", *out, "--size", 60, match="--size 60 does not fit the tokenizer: frames "
            "must be a multiple of 8 pixels (its spatial factor): give 56 or 64")
    refused(capsys, "train", "tokenizer", *out, "--ckpt-minutes", 0, match="--ckpt-minutes must be a number of "
            "minutes above 0")
    assert main(["train", "tokenizer", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "with τ 2 (tiny, mnist): 3, 5, 7, 9, ...; with τ 4 (base): 5, 9, 13, 17" in text
    assert "4 for tiny; 8 for mnist, base" in text
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------- what a run shows: log.csv, preview.png, plot


def test_log_preview_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "tokenizer", "--out", out, *TOKENIZER, "--eval-every", 3, "--log-every", 2, "--ckpt-every", 4]
    assert run(capsys, *argv, "--steps", 6)[0] == 0
    names, rows = read_log(out)
    assert names[:4] == ["step", "elapsed_s", "left_s", "loss"] and "eval_psnr" in names
    assert [r["step"] for r in rows] == [2, 3, 4, 6] and rows[-1]["left_s"] == 0
    assert all(r["left_s"] >= 0 and r["elapsed_s"] > 0 for r in rows)
    assert rows[0]["eval_psnr"] is None and rows[1]["eval_psnr"] > 0  # first evaluated at step 3
    assert is_arvid_picture(out / "preview.png", "training preview")
    # rows a killed run logged after its last checkpoint go, as its steps do: the log is the checkpoint's, then on
    with open(out / "log.csv", "a") as f:
        f.write("7,1,1,9,9,9,9,9,9\n")
    assert run(capsys, "train", "tokenizer", "--out", out, "--resume", "--steps", 8)[0] == 0
    assert [r["step"] for r in read_log(out)[1]] == [2, 3, 4, 6, 8]


def test_plot_prints_a_table_and_draws_curves_without_writing_over_a_users_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "tokenizer", "--out", out, *TOKENIZER, "--steps", 4, "--log-every", 1)[0] == 0
    capsys.readouterr()
    assert main(["train", "plot", str(out), "--rows", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["step", "loss"] and [ln.split()[0] for ln in printed[1:4]] == ["1", "3", "4"]
    assert printed[-1] == f"arvid: curves drawn in {out / 'curves.png'}"
    assert is_arvid_picture(out / "curves.png", "training curves")
    (tmp_path / "mine.png").write_bytes(b"user")
    refused(capsys, "train", "plot", out, "--out", tmp_path / "mine.png", match="arvid did not write it")
    assert (tmp_path / "mine.png").read_bytes() == b"user"
    refused(capsys, "train", "plot", tmp_path, match="log.csv does not exist")


def test_a_users_log_or_preview_in_the_run_folder_is_never_written_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("date,weight\n")
    before = listing(out)
    refused(capsys, "train", "tokenizer", "--out", out, *TOKENIZER, "--steps", 1, match="log.csv exists and arvid did "
            "not write it")
    (out / "log.csv").unlink()
    (out / "preview.png").write_bytes(b"\x89PNG user")
    refused(capsys, "train", "tokenizer", "--out", out, *TOKENIZER, "--steps", 1, match="preview.png exists and arvid "
            "did not write it")
    assert listing(out) == {"preview.png": b"\x89PNG user"} and before == {"log.csv": b"date,weight\n"}


def test_plot_help_answers_without_importing_torch():
    code = ("import sys; from arvid.cli.main import main; code = main(['train', 'plot', '--help']); "
            "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stdout[-500:] + done.stderr[-500:]
