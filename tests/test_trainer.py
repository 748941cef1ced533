"""The training engine on the toy task: schedule, exact resume, NaN stop, DDP, SIGKILL, CLI."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch

from arvid.cli.main import main
from arvid.errors import ArvidError
from arvid.files import load_model_files, read_safetensors
from arvid.train import TrainConfig, latest_checkpoint, lr_factor, train
from arvid.train import checkpoint as ckpt
from arvid.train.toy import ToyTask


@dataclass
class Kept(ToyTask):
    """Keeps the model it builds; stops (like Ctrl-C) or poisons the loss at a chosen step."""

    stop_at: int | None = None
    nan_at: int | None = None

    def build_model(self):
        self.model = super().build_model()
        return self.model

    def batch(self, step, rank, world_size, batch_size, device):
        if step == self.stop_at:
            raise KeyboardInterrupt
        self.current = step
        return super().batch(step, rank, world_size, batch_size, device)

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        return (loss * math.nan if self.current == self.nan_at else loss), metrics


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), steps=10, batch_size=4, lr=1e-2, warmup_steps=2, ckpt_every=5,
                log_every=1, seed=7, device="cpu")
    return TrainConfig(**{**base, **kw})


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    f = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[4] == pytest.approx(0.5) and f[9] == 1.0 and f[10] == 1.0
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.1) and lr_factor(500, 100, 10, 0.1) == pytest.approx(0.1)
    assert f[10 + 89 // 2] == pytest.approx(0.55, abs=0.02)  # half way down the cosine
    assert lr_factor(0, 1, 0, 0.0) == 1.0  # a one-step run without warmup trains at the peak


def test_bad_settings_are_refused():
    with pytest.raises(ArvidError, match="steps=0.*lr=-1"):
        TrainConfig(out_dir="x", steps=0, lr=-1)
    with pytest.raises(ArvidError, match="min_lr_ratio=2"):
        TrainConfig(out_dir="x", min_lr_ratio=2)


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    whole = Kept(dropout=0.2)  # dropout draws random numbers: resume must restore the RNG too
    final = train(whole, _cfg(tmp_path / "whole"))
    cut = Kept(dropout=0.2, stop_at=7)  # killed (Ctrl-C) during step 8, after the step-5 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(cut, _cfg(tmp_path / "cut"))
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000005"
    resumed = Kept(dropout=0.2)
    again = train(resumed, _cfg(tmp_path / "cut", resume=True))
    for name, t in _weights(whole).items():
        assert torch.equal(t, _weights(resumed)[name]), name
    assert again["loss"] == final["loss"] and again["step"] == 10
    hist_whole = json.loads((tmp_path / "whole" / "trainer_state.json").read_text())["history"]
    hist_cut = json.loads((tmp_path / "cut" / "trainer_state.json").read_text())["history"]
    assert [h["loss"] for h in hist_cut] == [h["loss"] for h in hist_whole]  # steps 1-5 saved, 6-10 redone
    opt_a, _ = read_safetensors(tmp_path / "whole" / "optimizer.safetensors")
    opt_b, _ = read_safetensors(tmp_path / "cut" / "optimizer.safetensors")
    assert all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a) and opt_a.keys() == opt_b.keys()


def test_nan_loss_stops_with_the_step_and_writes_no_poisoned_checkpoint(tmp_path):
    task = Kept(nan_at=3)  # the 4th step
    with pytest.raises(ArvidError, match="loss is nan at step 4"):
        train(task, _cfg(tmp_path / "run", ckpt_every=2))
    assert [p.name for p in ckpt.checkpoint_folders(tmp_path / "run")] == ["step-00000002"]
    files = load_model_files(tmp_path / "run", "toy")
    assert all(torch.isfinite(t).all() for t in files.state_dict.values())
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == 2
    assert all(torch.isfinite(p).all() for p in task.model.parameters())  # the bad step never updated


def test_refuses_to_overwrite_a_checkpoint_and_to_resume_another_model(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("a folder with other things is fine")
    train(Kept(), _cfg(tmp_path / "run", steps=2, ckpt_every=1))
    with pytest.raises(ArvidError, match="already holds a training checkpoint: add --resume"):
        train(Kept(), _cfg(tmp_path / "run", steps=4))
    with pytest.raises(ArvidError, match="another model config.*hidden"):
        train(Kept(hidden=16), _cfg(tmp_path / "run", steps=4, resume=True))
    assert train(Kept(), _cfg(tmp_path / "run", steps=4, resume=True))["step"] == 4
    from arvid.files import save_model

    save_model(tmp_path / "model", Kept().build_model(), Kept().model_config(), "toy")
    with pytest.raises(ArvidError, match="holds model files but no checkpoints/ folder"):
        train(Kept(), _cfg(tmp_path / "model", steps=2, resume=True))


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    out = train(Kept(), _cfg(tmp_path / "run", steps=3, bf16=True))
    assert math.isfinite(out["loss"]) and out["step"] == 3


_DDP_SCRIPT = """
import os, sys, torch
from arvid.files import save_model
from arvid.train import TrainConfig, train
from arvid.train.toy import ToyTask
torch.set_num_threads(1)
class Kept(ToyTask):
    def build_model(self):
        self.model = super().build_model()
        return self.model
task = Kept()
out = sys.argv[1]
train(task, TrainConfig(out_dir=out, steps=4, batch_size=3, lr=1e-2, warmup_steps=1, ckpt_every=2, device="cpu"))
save_model(os.path.join(out, "rank" + os.environ["RANK"]), task.model, {}, "toy")
"""


def test_two_process_gloo_ddp_matches_one_process_with_both_batches(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = load_model_files(tmp_path / "ddp" / "rank0", "toy").state_dict
    rank1 = load_model_files(tmp_path / "ddp" / "rank1", "toy").state_dict
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    single = Kept()  # one process, batch 6 = the two ranks' batches of 3 together
    train(single, TrainConfig(out_dir=str(tmp_path / "one"), steps=4, batch_size=6, lr=1e-2, warmup_steps=1,
                              ckpt_every=2, device="cpu"))
    for k, t in _weights(single).items():
        torch.testing.assert_close(rank0[k], t, atol=1e-6, rtol=0)
    state = json.loads((tmp_path / "ddp" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4


_KILL_SCRIPT = """
import sys, time, torch
from arvid.train import TrainConfig, train
from arvid.train.toy import ToyTask
torch.set_num_threads(int(sys.argv[3]))
class Slow(ToyTask):
    def batch(self, step, rank, world_size, batch_size, device):
        with open(sys.argv[2], "a") as f:
            f.write(f"{step}\\n")
        time.sleep(0.02)
        return super().batch(step, rank, world_size, batch_size, device)
train(Slow(dropout=0.2), TrainConfig(out_dir=sys.argv[1], steps=STEPS, batch_size=4, lr=1e-2, warmup_steps=2,
                                     ckpt_every=EVERY, log_every=1, seed=7, device="cpu", resume=True))
"""


def test_sigkill_at_a_random_moment_then_resume_loses_at_most_one_interval(tmp_path):
    steps, every = 60, 3
    out, trace = tmp_path / "run", tmp_path / "trace.txt"
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT.replace("STEPS", str(steps)).replace("EVERY", str(every)))
    cmd = [sys.executable, str(script), str(out), str(trace), str(torch.get_num_threads())]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(out) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        delay = random.uniform(0.0, 0.3)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended on its own ({proc.returncode}) before the kill"
    started = max(int(s) for s in trace.read_text().split())
    folder = latest_checkpoint(out)
    saved = ckpt.load_checkpoint(folder, "toy").state["step"]  # complete and readable
    assert started + 1 - saved <= every, f"killed {delay:.3f}s after the first checkpoint: lost too much"
    load_model_files(out, "toy")  # the top-level files are complete too
    json.loads((out / "trainer_state.json").read_text())

    resumed = Kept(dropout=0.2)
    train(resumed, _cfg(out, steps=steps, ckpt_every=every, resume=True))
    leftovers = [p.name for p in [*out.iterdir(), *(out / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert leftovers == []
    whole = Kept(dropout=0.2)
    train(whole, _cfg(tmp_path / "whole", steps=steps, ckpt_every=every))
    for k, t in _weights(whole).items():
        torch.testing.assert_close(_weights(resumed)[k], t, atol=1e-6, rtol=0)


def test_cli_trains_resumes_and_refuses_clearly(tmp_path, capsys):
    args = ["train", "toy", "--out", str(tmp_path / "run"), "--steps", "4", "--ckpt-every", "2",
            "--device", "cpu", "--warmup", "1", "--hidden", "8"]
    assert main(args) == 0
    assert load_model_files(tmp_path / "run", "toy").config["hidden"] == 8
    assert main(args) == 2
    assert "already holds a training checkpoint: add --resume" in capsys.readouterr().err
    assert main([*args[:5], "6", *args[6:], "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == 6


def test_cli_names_a_missing_or_incomplete_task_module(tmp_path, monkeypatch, capsys):
    from arvid.cli import train as cli_train

    monkeypatch.setitem(cli_train.TASK_MODULES, "generator", "arvid.no_such_module")
    assert main(["train", "generator", "--out", str(tmp_path / "g")]) == 2
    assert "module arvid.no_such_module is missing" in capsys.readouterr().err
    monkeypatch.setitem(cli_train.TASK_MODULES, "generator", "arvid.errors")
    assert main(["train", "generator", "--out", str(tmp_path / "g")]) == 2
    assert "arvid.errors lacks add_arguments and task_from_args" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_cli_help_lists_the_engine_and_task_flags(capsys):
    assert main(["train", "toy", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--steps", "--batch-size", "--lr", "--warmup", "--ckpt-every", "--seed", "--device", "--out",
                 "--resume", "--bf16", "--no-bf16", "--hidden"):
        assert flag in text
    code = "import argparse, sys, arvid.cli.train as t; t.register(argparse.ArgumentParser().add_subparsers()); " \
           "print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", "registering `arvid train` must not import torch (--help stays fast)"
