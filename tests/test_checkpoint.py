"""Model folders and training checkpoints: round trips, and untrusted files failing clearly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import arvid.files
from arvid.errors import ArvidError
from arvid.generator import Generator
from arvid.files import ModelFiles, check_state_dict, load_model_files, load_state, save_model
from arvid.train import checkpoint as ckpt
from arvid.train import rng


class Tied(nn.Module):
    """Two modules sharing one weight, like a generator's tied embedding and output head."""

    def __init__(self, n: int = 5, d: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(n, d)
        self.head = nn.Linear(d, n, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.LayerNorm(d)


def _saved(tmp_path, config=None):
    torch.manual_seed(0)
    model = Tied()
    save_model(tmp_path / "m", model, config or {"n": 5, "d": 3, "presets": [1, 2]}, "toy")
    return model, tmp_path / "m"


def test_save_load_round_trip_keeps_tensors_config_and_tied_weights(tmp_path):
    model, folder = _saved(tmp_path)
    files = load_model_files(folder, "toy")
    assert isinstance(files, ModelFiles)
    assert files.config == {"n": 5, "d": 3, "presets": [1, 2]}
    assert files.state_dict.keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        assert torch.equal(files.state_dict[name], t), name
    other = Tied()
    load_state(other, files)
    assert other.head.weight is other.embed.weight  # still tied after loading
    assert torch.equal(other.embed.weight, model.embed.weight)
    envelope = json.loads((folder / "config.json").read_text())
    assert envelope["kind"] == "toy" and isinstance(envelope["arvid_version"], str)
    assert load_model_files(folder / "model.safetensors", "toy").config == files.config  # a file path works too
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left


@pytest.mark.parametrize("cut", [0, 7, 8, 40, -1])
def test_truncated_weights_fail_naming_the_file(tmp_path, cut):
    _, folder = _saved(tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: cut if cut >= 0 else len(data) - 1])
    with pytest.raises(ArvidError, match="model.safetensors.*truncated or corrupt"):
        load_model_files(folder, "toy")


def test_garbage_weights_fail_naming_the_file(tmp_path):
    _, folder = _saved(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(range(256)))
    with pytest.raises(ArvidError, match="model.safetensors"):
        load_model_files(folder, "toy")


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"kind": "generator", "arvid_version": "0.1.0", "config": {}}', "'generator' model, not a 'toy'"),
        ('{"kind": "toy", "arvid_version": "0.1.0", "config": {}, "code": "import os"}', r"unknown keys \['code'\]"),
        ('{"kind": "toy", "arvid_version": "0.1.0"}', r"missing keys \['config'\]"),
        ('{"kind": "toy", "arvid_version": "0.1.0", "config": [1]}', "config must be a JSON object"),
        (b"\xff\xfe".decode("latin-1"), "not UTF-8 text"),
    ],
)
def test_bad_config_json_fails_naming_the_file(tmp_path, text, message):
    _, folder = _saved(tmp_path)
    (folder / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ArvidError, match=message) as e:
        load_model_files(folder, "toy")
    assert "config.json" in str(e.value)


def test_missing_folder_and_files_fail_clearly(tmp_path):
    with pytest.raises(ArvidError, match="does not exist"):
        load_model_files(tmp_path / "nowhere", "toy")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ArvidError, match="not a model folder"):
        load_model_files(tmp_path / "file.bin", "toy")
    _, folder = _saved(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ArvidError, match="no model.safetensors"):
        load_model_files(folder, "toy")


def test_check_state_dict_lists_missing_unexpected_and_misshaped(tmp_path):
    model = Tied()
    sd = dict(model.state_dict())
    del sd["norm.bias"]
    sd["extra.weight"] = torch.zeros(2)
    sd["embed.weight"] = torch.zeros(6, 3)
    with pytest.raises(ArvidError) as e:
        check_state_dict(model, sd, tmp_path / "model.safetensors")
    msg = str(e.value)
    assert "model.safetensors" in msg
    assert "missing tensors: norm.bias" in msg
    assert "unexpected tensors: extra.weight" in msg
    assert "embed.weight (file [6, 3], model [5, 3])" in msg
    check_state_dict(model, model.state_dict(), "ok")  # a matching dict passes


def test_check_state_dict_refuses_integers_for_floats_and_casts_other_float_precisions(tmp_path):
    model = Tied()
    sd = dict(model.state_dict())
    check_state_dict(model, {**sd, "norm.weight": sd["norm.weight"].half()}, "ok")  # a deliberate cast
    with pytest.raises(ArvidError, match=r"wrong dtypes: norm.weight \(file int64, model float32\)"):
        check_state_dict(model, {**sd, "norm.weight": sd["norm.weight"].long()}, tmp_path / "model.safetensors")


def test_deeply_nested_config_json_is_refused(tmp_path):
    _, folder = _saved(tmp_path)
    (folder / "config.json").write_text("{" + '"a": {' * 50_000)
    with pytest.raises(ArvidError, match="config.json is not an arvid file: its JSON is nested too deeply"):
        load_model_files(folder, "toy")


def _tiny_generator(folder, **overrides):
    from arvid.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    model = Generator(GeneratorConfig.from_name("tiny", **overrides))
    folder.parent.mkdir(exist_ok=True)
    model.save_pretrained(folder)
    return model, folder


def test_generator_weights_are_checked_from_the_header_before_any_tensor_is_read(tmp_path, monkeypatch):
    _, folder = _tiny_generator(tmp_path / "gen")
    _, other = _tiny_generator(tmp_path / "other" / "gen", d_model=64)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())

    def no_reading(*args, **kwargs):
        raise AssertionError("a tensor was read before the header was checked")
    monkeypatch.setattr(arvid.files, "load_file", no_reading)
    with pytest.raises(ArvidError, match=r"gen/model.safetensors does not match the model built from its config.json; "
                                         r"wrong shapes: tok_emb.weight \(file \[33, 64\], model \[33, 32\]\)"):
        Generator.from_pretrained(folder)


def test_weights_a_config_describes_are_bounded(tmp_path):
    model, folder = _tiny_generator(tmp_path / "gen")
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    files = load_model_files(folder, "generator", Generator.layout, max_bytes=nbytes)
    assert files.state_dict.keys() == model.state_dict().keys()
    with pytest.raises(ArvidError, match=r"gen/config.json describes a model with 0.0 GiB of weights, over the limit"):
        load_model_files(folder, "generator", Generator.layout, max_bytes=nbytes - 1)


@pytest.mark.parametrize("quantizer", [dict(quantizer="fsq"), dict(quantizer="lfq", num_codes=64),
                                       dict(quantizer="vq", num_codes=32), dict(quantizer="fsq", context=True, warp=True)])
def test_tokenizer_layout_is_the_tokenizer_state_dict_without_its_weights(quantizer):
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    cfg = TokenizerConfig.preset("tiny", **quantizer)
    layout = Tokenizer.layout(cfg)
    real = Tokenizer(cfg).state_dict()
    assert list(layout) == list(real)
    assert {k: (t.shape, t.dtype) for k, t in layout.items()} == {k: (t.shape, t.dtype) for k, t in real.items()}
    assert all(t.is_meta for k, t in layout.items() if not k.startswith("quantizer."))
    big = Tokenizer.layout(cfg.replace(width=4096, max_width=4096, depth=16, latent_depth=16))  # on meta
    assert sum(t.numel() * t.element_size() for t in big.values()) > 200 * 2**30


def _trained_optimizer(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))
    opt = torch.optim.AdamW([{"params": [model[0].weight, model[1].weight]},
                             {"params": [model[0].bias, model[1].bias], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95))
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    model, opt = _trained_optimizer()
    tensors, meta = ckpt.optimizer_tensors(opt)
    meta = json.loads(json.dumps(meta))  # as it comes back from trainer_state.json
    save_model(tmp_path / "o", tensors, {}, "opt")
    tensors = load_model_files(tmp_path / "o", "opt").state_dict
    model2, opt2 = _trained_optimizer(seed=1)
    model2.load_state_dict(model.state_dict())
    ckpt.load_optimizer(opt2, tensors, meta, "optimizer.safetensors")
    assert opt2.param_groups[0]["betas"] == (0.9, 0.95) and opt2.param_groups[1]["weight_decay"] == 0.0
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_optimizer_state_of_another_model_is_refused():
    _, opt = _trained_optimizer()
    tensors, meta = ckpt.optimizer_tensors(opt)
    other = torch.optim.AdamW([nn.Parameter(torch.zeros(4, 6)), nn.Parameter(torch.zeros(3))])
    with pytest.raises(ArvidError, match="does not match"):
        ckpt.load_optimizer(other, tensors, meta, "optimizer.safetensors")
    bigger = nn.Sequential(nn.Linear(4, 7), nn.Linear(7, 2))
    opt3 = torch.optim.AdamW([{"params": [bigger[0].weight, bigger[1].weight]},
                              {"params": [bigger[0].bias, bigger[1].bias]}])
    with pytest.raises(ArvidError, match="has shape"):
        ckpt.load_optimizer(opt3, tensors, meta, "optimizer.safetensors")


def test_rng_state_round_trips_through_json():
    import random

    import numpy as np

    rng.seed_all(3)
    state = json.loads(json.dumps(rng.capture(torch.device("cpu"))))
    first = (torch.rand(3), random.random(), np.random.rand())
    rng.seed_all(99)
    rng.restore(state, torch.device("cpu"))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def _checkpoint(out, step, model, opt):
    return ckpt.save_checkpoint(out, step, model, opt, "toy", {"w": 1}, {"history": [], "rng": []})


def test_checkpoint_commits_whole_folders_links_top_level_and_prunes(tmp_path):
    model, opt = _trained_optimizer()
    out = tmp_path / "run"
    out.mkdir()
    _checkpoint(out, 2, model, opt)
    folder = _checkpoint(out, 4, model, opt)
    assert [p.name for p in ckpt.checkpoint_folders(out)] == ["step-00000004"]  # older pruned
    for name in ("model.safetensors", "config.json", "optimizer.safetensors", "trainer_state.json"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()
    c = ckpt.load_checkpoint(folder, "toy")
    assert c.state["step"] == 4 and c.model.metadata["arvid_step"] == "4"
    assert load_model_files(out, "toy").config == {"w": 1}  # the run folder is a model folder
    state = json.loads((folder / "trainer_state.json").read_text())
    state["step"] = 7
    (folder / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(ArvidError, match="says step 7"):
        ckpt.load_checkpoint(folder, "toy")


def test_a_failure_mid_checkpoint_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    model, opt = _trained_optimizer()
    out = tmp_path / "run"
    out.mkdir()
    _checkpoint(out, 2, model, opt)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls = []

    def failing_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # model written, optimizer fails (disk full)
            raise OSError(28, "No space left on device")
        return real_save(tensors, path, metadata=metadata)

    import arvid.files  # where every safetensors file is written

    real_save = arvid.files.save_file
    monkeypatch.setattr(arvid.files, "save_file", failing_save)
    with pytest.raises(ArvidError, match="cannot write checkpoint.*No space left"):
        _checkpoint(out, 4, model, opt)
    assert [p.name for p in ckpt.checkpoint_folders(out)] == ["step-00000002"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


def test_sweep_removes_what_a_killed_run_left(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / ".step-00000006.abc.tmp").mkdir(parents=True)
    (out / ".model.xyz.tmp.safetensors").write_bytes(b"half")
    (out / ".trainer_state.q1.tmp.json").write_text("{")
    (out / "notes.txt").write_text("mine")
    ckpt.sweep_temporaries(out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "notes.txt"]
    assert list((out / "checkpoints").iterdir()) == []
