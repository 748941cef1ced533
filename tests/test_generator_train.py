"""Training the generator through arvid's engine: a run, exact resume, a two-process gloo DDP run
through `arvid train generator` under torchrun, and the trained folder loads as a Generator."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arvid.errors import ArvidError
from arvid.generator import Generator
from arvid.train.tokens import write_token_dataset
from arvid.train.generator import add_arguments, task_from_args
from arvid.kernels import use_backend
from arvid.train import TrainConfig, train

ARGS = ["--preset", "tiny", "--window", "2", "--train-frames", "5", "--eval-every", "2", "--eval-windows", "4"]


@pytest.fixture(autouse=True)
def fast_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with use_backend("pytorch"):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Labelled clips of 6 latent frames of 4x4 codes whose frames drift predictably."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    first = rng.integers(0, 32, size=(24, 1, 4, 4))
    clips = (first + np.arange(6)[None, :, None, None]) % 32  # (24, 6, 4, 4)
    labels = rng.integers(0, 10, size=(24, 2))
    write_token_dataset(root / "train", clips[:20], labels[:20], vocab_size=32, num_classes=10)
    write_token_dataset(root / "eval", clips[20:], labels[20:], vocab_size=32, num_classes=10)
    return root


def task(tokens, out, steps, *extra):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--tokens", str(tokens / "train"), "--eval-tokens", str(tokens / "eval"), *ARGS, *extra])
    args.out, args.steps, args.seed = str(out), steps, 0
    return task_from_args(args)


def run(tokens, out, steps, resume=False, *extra):
    cfg = TrainConfig(out_dir=str(out), steps=steps, batch_size=2, lr=3e-3, warmup_steps=1, ckpt_every=2,
                      log_every=1, device="cpu", resume=resume)
    return train(task(tokens, out, steps, *extra), cfg)


def test_train_resume_is_exact_and_the_model_loads(tokens, tmp_path):
    straight = run(tokens, tmp_path / "a", 4)
    assert {"bits_per_token", "eval_bits_per_token", "tokens/s"} <= set(straight)
    assert 0 < straight["eval_bits_per_token"] < 10 and np.isfinite(straight["bits_per_token"])
    run(tokens, tmp_path / "b", 2)
    resumed = run(tokens, tmp_path / "b", 4, resume=True)
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["bits_per_token"] == straight["bits_per_token"]
    model = Generator.from_pretrained(tmp_path / "a")
    assert model.config.conditional and (model.config.window_frames, model.config.vocab_size) == (2, 32)


def test_masked_training_resumes_exactly_scores_masked_tokens_and_starts_from_raster_weights(tokens, tmp_path):
    straight = run(tokens, tmp_path / "a", 4, False, "--decoding", "masked")
    assert {"bits_per_masked_token", "eval_bits_per_masked_token"} <= set(straight)
    run(tokens, tmp_path / "b", 2, False, "--decoding", "masked")
    resumed = run(tokens, tmp_path / "b", 4, True, "--decoding", "masked")
    assert resumed["bits_per_masked_token"] == straight["bits_per_masked_token"]
    model = Generator.from_pretrained(tmp_path / "a")
    assert model.config.masked and model.config.frame == 16
    t = task(tokens, tmp_path / "c", 2, "--decoding", "masked")
    batch = t.batch(3, 0, 1, 4, torch.device("cpu"))
    scored = batch["scored"]  # the masked inputs are the scored tokens, the rest is the clip itself
    assert torch.equal(batch["inputs"] == t.config.mask_token, scored) and torch.equal(batch["clean"], batch["targets"])
    assert (scored.view(4, -1, 16).sum(-1) >= 1).all()
    # a raster run's weights start a masked run: the same parameters, another decoding
    raster = run(tokens, tmp_path / "r", 2)
    assert raster["bits_per_token"] > 0
    t = task(tokens, tmp_path / "m", 2, "--init", str(tmp_path / "r"), "--decoding", "masked")
    assert t.config.masked and t.config.d_model == Generator.from_pretrained(tmp_path / "r").config.d_model
    # a run saved before `decoding` existed resumes as the raster run it is
    for path in (tmp_path / "r").rglob("config.json"):
        d = json.loads(path.read_text())
        d["config"].pop("decoding", None)  # (the top-level file may be a link to the checkpoint's)
        path.write_text(json.dumps(d))
    assert run(tokens, tmp_path / "r", 3, True)["bits_per_token"] > 0


def test_task_checks_its_options(tokens, tmp_path):
    with pytest.raises(ArvidError, match="--train-frames"):
        task(tokens, tmp_path, 2, "--train-frames", "9")
    with pytest.raises(ArvidError, match="not both"):
        task(tokens, tmp_path, 2, "--tokenizer", "x")
    t = task(tokens, tmp_path, 2, "--no-labels")
    assert not t.config.conditional and t.label_dropout == 0
    batch = t.batch(3, 1, 2, 2, torch.device("cpu"))
    again = t.batch(3, 1, 2, 2, torch.device("cpu"))
    assert all(torch.equal(batch[k], again[k]) for k in ("inputs", "targets"))
    assert not torch.equal(batch["inputs"], t.batch(3, 0, 2, 2, torch.device("cpu"))["inputs"])


def test_init_starts_from_a_trained_generator(tokens, tmp_path):
    run(tokens, tmp_path / "a", 2)
    t = task(tokens, tmp_path / "b", 2, "--init", str(tmp_path / "a"))
    trained = Generator.from_pretrained(tmp_path / "a")
    assert t.config == trained.config
    built = t.build_model().state_dict()
    assert all(torch.equal(built[k], v) for k, v in trained.state_dict().items())
    with pytest.raises(ArvidError, match="own architecture"):
        task(tokens, tmp_path / "b", 2, "--init", str(tmp_path / "a"), "--d-model", "64")
    with pytest.raises(ArvidError, match="--init"):
        task(tokens, tmp_path / "b", 2, "--init", str(tmp_path / "a"), "--no-labels")
    with pytest.raises(ArvidError):
        task(tokens, tmp_path / "b", 2, "--init", str(tmp_path / "missing"))


@pytest.mark.slow
def test_ddp_step_with_two_gloo_processes(tokens, tmp_path):
    env = {**os.environ, "ARVID_ATTENTION_BACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "arvid", "train", "generator", "--tokens", str(tokens / "train"), "--out", str(tmp_path / "ddp"),
           "--steps", "2", "--batch-size", "2", "--device", "cpu", "--ckpt-every", "2", *ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2
    assert Generator.from_pretrained(tmp_path / "ddp").config.frame_tokens == 16
