"""Untrusted model folders: `arvid generate --model BAD` fails with one clear line before generating.

Each case copies a tiny saved model (tokenizer/ + generator/), breaks one thing (config.json with
unknown keys, wrong types, impossible sizes; tensors that do not match the config; truncated or
garbage weights; missing files) and runs the CLI in this process. It must exit 2 with one line on
stderr naming the model folder, print no progress bar (so nothing was generated) and write nothing.
Weights are compared with the model the config describes from the safetensors header alone, before
a tensor is read or a weight allocated (the model is built on the meta device).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from arvid.cli.main import main
from arvid.generator import Generator, GeneratorConfig
from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import Tokenizer, TokenizerConfig


def tiny_pair(seed: int = 0, **tok_overrides) -> Arvid:
    torch.manual_seed(seed)
    tok = Tokenizer(TokenizerConfig.preset("tiny", **tok_overrides))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4))
    return Arvid(tok, gen, "cpu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good") / "model"
    tiny_pair().save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory) -> Path:
    """A model with other sizes: its tensors fit neither config of `model_dir`."""
    root = tmp_path_factory.mktemp("other") / "model"
    torch.manual_seed(1)
    tok = Tokenizer(TokenizerConfig.preset("tiny", width=16, max_width=32))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, d_model=64, mlp_hidden=96))
    Arvid(tok, gen, "cpu").save_pretrained(root)
    return root


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):  # where a broken case does reach generation, keep it quick
        yield


# ------------------------------------------------------------------------------------- mutations


def config(part: str, change):
    """Edit the model's own config (the "config" entry of part/config.json) with `change(dict)`."""
    def apply(root: Path, other: Path) -> None:
        path = root / part / "config.json"
        envelope = json.loads(path.read_text())
        change(envelope["config"])
        path.write_text(json.dumps(envelope))
    return apply


def envelope(part: str, change):
    def apply(root: Path, other: Path) -> None:
        path = root / part / "config.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return apply


def text(part: str, name: str, content: str | bytes):
    def apply(root: Path, other: Path) -> None:
        path = root / part / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return apply


def tensors(part: str, change):
    def apply(root: Path, other: Path) -> None:
        path = root / part / "model.safetensors"
        sd = load_file(str(path))
        change(sd)
        save_file(sd, str(path))
    return apply


def truncated(part: str, fraction: float):
    def apply(root: Path, other: Path) -> None:
        path = root / part / "model.safetensors"
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)] if fraction < 1 else data[:-1])
    return apply


def swapped(part: str, name: str):
    """Put the other model's file in place of this one's (weights of another model)."""
    def apply(root: Path, other: Path) -> None:
        shutil.copyfile(other / part / name, root / part / name)
    return apply


def removed(rel: str):
    def apply(root: Path, other: Path) -> None:
        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return apply


def first_key(sd: dict) -> str:
    return sorted(sd)[0]


GEN, TOK = "generator", "tokenizer"
CASES = {  # name: (mutation, text the error must contain)
    # config.json: unknown keys
    "generator config unknown key": (config(GEN, lambda c: c.update(code="import os")), "unknown keys ['code']"),
    "generator envelope unknown key": (envelope(GEN, lambda d: d.update(loader="pickle")), "unknown keys ['loader']"),
    "tokenizer config unknown key": (config(TOK, lambda c: c.update(hidden=1)), "unknown tokenizer setting(s) hidden"),
    "generator config missing key": (config(GEN, lambda c: c.pop("n_layer")), "lacks keys ['n_layer']"),
    "envelope of another kind": (envelope(GEN, lambda d: d.update(kind="tokenizer")), "not a 'generator'"),
    # config.json: wrong types
    "n_layer as a string": (config(GEN, lambda c: c.update(n_layer="2")), "'n_layer' must be int"),
    "n_layer fractional": (config(GEN, lambda c: c.update(n_layer=2.5)), "'n_layer' must be int"),
    "n_layer boolean": (config(GEN, lambda c: c.update(n_layer=True)), "'n_layer' must be int"),
    "n_layer null": (config(GEN, lambda c: c.update(n_layer=None)), "'n_layer' must be int"),
    "rope_base a list": (config(GEN, lambda c: c.update(rope_base=[1])), "'rope_base' must be float"),
    "tokenizer levels a string": (config(TOK, lambda c: c.update(levels="55")), "'levels' must be a list"),
    "tokenizer channels float": (config(TOK, lambda c: c.update(channels=1.0)), "'channels' must be an integer"),
    "config entry a list": (envelope(GEN, lambda d: d.update(config=[1, 2])), "config must be a JSON object"),
    # config.json: not a config at all
    "config.json empty": (text(GEN, "config.json", ""), "not valid JSON"),
    "config.json binary": (text(GEN, "config.json", bytes(range(256))), "not UTF-8 text"),
    "config.json a list": (text(GEN, "config.json", "[1, 2]"), "must hold a JSON object"),
    "config.json truncated": (text(GEN, "config.json", '{"kind": "generator", "config": {"vocab'), "not valid JSON"),
    # tensors that do not match the config
    "generator weights of another model": (swapped(GEN, "model.safetensors"), "does not match the model"),
    "tokenizer weights of another model": (swapped(TOK, "model.safetensors"), "does not match the model"),
    "generator config of another model": (swapped(GEN, "config.json"), "does not match the model"),
    "a tensor missing": (tensors(GEN, lambda sd: sd.pop(first_key(sd))), "missing tensors"),
    "an extra tensor": (tensors(GEN, lambda sd: sd.update(backdoor=torch.zeros(3))), "unexpected tensors: backdoor"),
    "a tensor of another shape": (tensors(GEN, lambda sd: sd.update({first_key(sd): torch.zeros(7, 3)})),
                                  "wrong shapes"),
    "integer weights": (tensors(GEN, lambda sd: sd.update({first_key(sd): sd[first_key(sd)].to(torch.int32)})),
                        "wrong dtypes: blocks.0.attn.proj.weight (file int32, model float32)"),
    "bool weights": (tensors(TOK, lambda sd: sd.update({first_key(sd): sd[first_key(sd)] > 0})),
                     "(file bool, model float32)"),
    "vocab_size not the tokenizer's": (config(GEN, lambda c: c.update(vocab_size=26)), "does not match the model"),
    # truncated, garbage, missing
    **{f"generator weights cut at {f:.0%}": (truncated(GEN, f), "truncated or corrupt") for f in (0.0, 0.5, 1.0)},
    "tokenizer weights cut at 50%": (truncated(TOK, 0.5), "truncated or corrupt"),
    "weights with a huge header length": (text(GEN, "model.safetensors", b"\xff" * 8 + b"{}"), "truncated or corrupt"),
    "weights are a pickle": (text(GEN, "model.safetensors", b"\x80\x04\x95" + bytes(40)), "truncated or corrupt"),
    "generator weights missing": (removed("generator/model.safetensors"), "has no model.safetensors"),
    "tokenizer config missing": (removed("tokenizer/config.json"), "has no config.json"),
    "generator folder missing": (removed("generator"), "no generator/ subfolder"),
}

IMPOSSIBLE = {  # valid types, impossible values: refused, naming config.json
    "n_layer 0": (config(GEN, lambda c: c.update(n_layer=0)), "n_layer=0"),
    "d_model not divisible by n_head": (config(GEN, lambda c: c.update(d_model=30)), "d_model=30"),
    "vocab_size 10^12": (config(GEN, lambda c: c.update(vocab_size=10**12)), "vocab_size=1000000000000"),
    "window_frames negative": (config(GEN, lambda c: c.update(window_frames=-3)), "window_frames=-3"),
    "rope_base NaN": (config(GEN, lambda c: c.update(rope_base=float("nan"))), "holds NaN (JSON has no such number)"),
    "rope_base Infinity": (config(GEN, lambda c: c.update(rope_base=float("inf"))), "holds Infinity (JSON has no such"),
    "tokenizer loss weight Infinity": (config(TOK, lambda c: c.update(l1_weight=float("inf"))),
                                       "holds Infinity (JSON has no such number)"),
    "tokenizer FSQ codebook of 2^24": (config(TOK, lambda c: c.update(levels=[256, 256, 256])), "16777216 codes"),
    "labels without classes": (config(GEN, lambda c: c.update(labels_per_clip=2)), "labels_per_clip=2"),
    "tokenizer channels 2": (config(TOK, lambda c: c.update(channels=2)), "channels must be 1 or 3"),
    "tokenizer temporal_factor 3": (config(TOK, lambda c: c.update(temporal_factor=3)), "temporal_factor"),
    "tokenizer FSQ level 1000": (config(TOK, lambda c: c.update(levels=[1000, 5])), "FSQ levels"),
}


def run_generate(root: Path, out: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["generate", "--model", str(root), "--frames", "3", "--out", str(out), "--device", "cpu"])
    return code, capsys.readouterr().err


def refused_before_generating(tmp_path, model_dir, other_dir, capsys, mutation) -> str:
    root = tmp_path / "model"
    shutil.copytree(model_dir, root)
    mutation(root, other_dir)
    out = tmp_path / "out" / "clip.npy"
    out.parent.mkdir()
    code, err = run_generate(root, out, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("arvid: error: "), err
    assert "generating" not in err and "Traceback" not in err  # no progress bar: nothing was generated
    assert list(out.parent.iterdir()) == []
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_broken_model_is_refused_before_generating(tmp_path, model_dir, other_dir, capsys, case):
    mutation, message = CASES[case]
    line = refused_before_generating(tmp_path, model_dir, other_dir, capsys, mutation)
    assert message in line, line
    assert str(tmp_path / "model") in line, line  # names the folder (and the file where there is one)


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_impossible_sizes_are_refused_before_generating(tmp_path, model_dir, other_dir, capsys, case):
    mutation, message = IMPOSSIBLE[case]
    line = refused_before_generating(tmp_path, model_dir, other_dir, capsys, mutation)
    assert message in line, line
    part = "tokenizer" if case.startswith("tokenizer") else "generator"
    assert str(tmp_path / "model" / part / "config.json") in line, line


def test_deeply_nested_config_json(tmp_path, model_dir, other_dir, capsys):
    line = refused_before_generating(tmp_path, model_dir, other_dir, capsys, text(GEN, "config.json", "[" * 100_000))
    assert "config.json" in line and "nested too deeply" in line, line


@pytest.mark.parametrize("part, value", [(GEN, float("nan")), (TOK, float("inf")), (TOK, -float("inf"))])
def test_non_finite_weights_are_refused(tmp_path, model_dir, other_dir, capsys, part, value):
    def poison(sd):
        sd[first_key(sd)].view(-1)[3] = value
    line = refused_before_generating(tmp_path, model_dir, other_dir, capsys, tensors(part, poison))
    name = first_key(load_file(str(model_dir / part / "model.safetensors")))
    assert f"{part}/model.safetensors: tensor {name} holds 1 NaN or infinite values" in line, line


def test_half_precision_weights_are_cast_on_load(tmp_path, model_dir):
    """float16/bfloat16 copies of a model are a deliberate, documented cast (integers are refused above)."""
    root = tmp_path / "model"
    shutil.copytree(model_dir, root)
    tensors(GEN, lambda sd: sd.update({k: t.to(torch.bfloat16) for k, t in sd.items()}))(root, root)
    tensors(TOK, lambda sd: sd.update({k: t.half() for k, t in sd.items() if t.is_floating_point()}))(root, root)
    model = Arvid.from_pretrained(root, device="cpu")
    for part, module, dtype in ((GEN, model.generator, torch.bfloat16), (TOK, model.tokenizer, torch.float16)):
        saved = load_file(str(model_dir / part / "model.safetensors"))
        for name, t in module.state_dict().items():
            assert t.dtype == saved[name].dtype, name  # the model keeps its own dtype (float32)
            torch.testing.assert_close(t, saved[name].to(dtype).to(t.dtype), rtol=0, atol=0)


def test_more_sink_frames_than_window_frames_is_a_valid_model():
    """s > W is accepted: the mask is the union of the sinks and the window and the sink rotation never
    lands inside the window, so the full forward and cached decoding still agree."""
    from arvid.generator import KVCache, slot_inputs

    cfg = GeneratorConfig.from_dict({**GeneratorConfig.from_name("tiny").to_dict(), "window_frames": 1,
                                     "sink_frames": 3}, source="config.json")
    torch.manual_seed(0)
    model = Generator(cfg).eval()
    tokens = torch.randint(0, cfg.vocab_size, (1, 7, cfg.latent_h, cfg.latent_w))  # past W + s: sinks move
    inputs = slot_inputs(tokens, cfg.bos_token)
    cache = KVCache.allocate(cfg, 1)
    with torch.no_grad():
        full = model(inputs)
        steps = [model.decode(inputs[:, p: p + 8], torch.arange(p, p + 8), cache) for p in range(0, inputs.shape[1], 8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------- absurd but in range

ABSURD = {  # each field within its own limits, the whole far beyond any memory
    "generator": {"n_layer": 256, "d_model": 1 << 15, "n_head": 256, "n_kv_head": 256, "mlp_hidden": 1 << 17},
    "tokenizer": {"width": 4096, "max_width": 4096, "depth": 16, "latent_depth": 16},
}


@pytest.mark.parametrize("part", list(ABSURD))
def test_absurd_model_size_is_refused_before_allocating(tmp_path, model_dir, part):
    root = tmp_path / "model"
    shutil.copytree(model_dir, root)
    config(part, lambda c: c.update(ABSURD[part]))(root, root)

    def limit_memory():  # never let the child take the machine down
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    out = tmp_path / "clip.npy"
    result = subprocess.run([sys.executable, "-m", "arvid", "generate", "--model", str(root), "--frames", "2",
                             "--out", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=120,
                            preexec_fn=limit_memory)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("arvid: error:"), result.stderr[-2000:]
    assert f"{root / part / 'config.json'} describes a model with" in lines[0], lines[0]
    assert "GiB of weights, over the limit of 16 GiB" in lines[0], lines[0]
    assert not out.exists()
