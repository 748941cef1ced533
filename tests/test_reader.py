"""The label reader (`arvid.reader`): shapes, scores, files, `arvid train reader`, and a model folder's reader/."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from arvid.cli.main import main
from arvid.data import make_dataset
from arvid.errors import ArvidError
from arvid.reader import LabelReader, ReaderConfig, multi_hot, shows_labels
from cli_cases import no_temporaries, refused

TINY = ReaderConfig(num_classes=10, channels=1, size=(16, 16), width=4)


def constant_reader(probabilities: list[float], config: ReaderConfig = TINY) -> LabelReader:
    """A reader that gives every picture the same class probabilities: scores that can be computed by hand."""
    reader = LabelReader(config).eval()
    with torch.no_grad():
        reader.head.weight.zero_()
        reader.head.bias.copy_(torch.logit(torch.tensor(probabilities)))
    return reader


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small reader trained through the CLI on real Moving MNIST frames (a few seconds)."""
    out = tmp_path_factory.mktemp("reader") / "run"
    assert main(["train", "reader", "--out", str(out), "--steps", "700", "--batch-size", "32", "--width", "8",
                 "--lr", "3e-3", "--warmup", "10", "--eval-every", "0", "--eval-frames", "64", "--ckpt-every", "700",
                 "--device", "cpu"]) == 0
    return out


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("size,channels", [((16, 16), 1), ((24, 40), 3), ((64, 64), 1)])
def test_logits_have_one_column_per_class_whatever_the_picture(size, channels):
    reader = LabelReader(ReaderConfig(num_classes=7, channels=channels, size=size, width=4))
    assert reader(torch.rand(3, channels, *size)).shape == (3, 7)
    pictures = np.zeros((5, *size, channels), np.uint8)
    assert reader.probabilities(pictures).shape == (5, 7)
    assert reader.label_scores(pictures, np.zeros((5, 2), np.int64)).shape == (5,)


def test_a_score_is_the_least_probability_among_the_distinct_labels():
    p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    reader = constant_reader(p)
    gray = np.zeros((6, 16, 16), np.uint8)  # (N, H, W): one channel
    labels = np.array([[3, 7], [7, 3], [3, 3], [-1, 8], [-1, -1], [9, 0]])
    expected = torch.tensor([p[3], p[3], p[3], p[8], 1.0, p[0]])
    torch.testing.assert_close(reader.label_scores(gray, labels), expected)
    assert reader.label_scores(gray, np.zeros((6, 0), np.int64)).tolist() == [1.0] * 6  # no labels at all
    assert reader.label_scores(gray, torch.tensor([3] * 6)).shape == (6,)  # one label per picture
    assert reader.label_scores(gray[:0], np.zeros((0, 2), np.int64)).shape == (0,)
    big = reader.label_scores(np.zeros((300, 16, 16, 1), np.uint8), np.full((300, 2), 4), batch=128)
    assert big.device.type == "cpu" and torch.allclose(big, torch.full((300,), p[4]))


@pytest.mark.parametrize("pictures,labels,match", [
    (np.zeros((2, 16, 16), np.float32), [[1, 2]] * 2, "uint8 pictures"),
    (np.zeros((2, 32, 32), np.uint8), [[1, 2]] * 2, "(N, 16, 16, 1)"),
    (np.zeros((2, 16, 16, 3), np.uint8), [[1, 2]] * 2, "(N, 16, 16, 1)"),
    (np.zeros((2, 16, 16), np.uint8), [[1, 2]], "for N = 2 pictures"),
    (np.zeros((2, 16, 16), np.uint8), [[1.0, 2.0]] * 2, "must be integers"),
    (np.zeros((2, 16, 16), np.uint8), [[1, 10]] * 2, "label 10 is not a class of this reader"),
    (np.zeros((2, 16, 16), np.uint8), [[1, -2]] * 2, "label -2 is not a class"),
])
def test_pictures_and_labels_that_do_not_fit_are_refused_by_name(pictures, labels, match):
    with pytest.raises(ArvidError, match=match.replace("(", r"\(").replace(")", r"\)")):
        LabelReader(TINY).label_scores(pictures, np.array(labels))


def test_targets_and_reading_count_distinct_labels_and_ignore_missing_ones():
    target = multi_hot(np.array([[3, 7], [3, 3], [-1, 2]]), 10)
    assert target.sum(1).tolist() == [2, 1, 1] and target[0, 3] == target[0, 7] == 1 and target[2, 2] == 1
    logits = torch.full((3, 10), -5.0)
    logits[0, [3, 7]] = 5.0  # reads 3 and 7
    logits[1, 3], logits[1, 4] = 5.0, 6.0  # reads a 4 above the 3: a picture of one 3 needs the 3 on top
    logits[2, 2] = 5.0
    assert shows_labels(logits, np.array([[7, 3], [3, 3], [2, -1]])).tolist() == [True, False, True]


def test_the_config_refuses_what_it_cannot_build_and_what_json_cannot_mean():
    with pytest.raises(ArvidError, match="size"):
        ReaderConfig(size=(4, 64))  # two 2x pools after a 2x downsampling need at least 8 pixels
    with pytest.raises(ArvidError, match="width"):
        ReaderConfig(width=0)
    good = TINY.to_dict()
    assert ReaderConfig.from_dict(json.loads(json.dumps(good))) == TINY
    for bad, match in (({**good, "width": 4.5}, "must be integers"), ({**good, "size": 16}, "size a list"),
                       ({**good, "extra": 1}, r"unknown keys \['extra'\]"), ({**good, "channels": True}, "integers")):
        with pytest.raises(ArvidError, match=match):
            ReaderConfig.from_dict(bad, source="x/config.json")


# ---------------------------------------------------------------- what a trained reader reads


def test_a_trained_reader_ranks_a_picture_showing_the_labels_above_one_that_does_not(trained):
    reader = LabelReader.from_pretrained(trained)
    videos, labels = make_dataset("moving-mnist", frames=1, size=64, split="eval", seed=3).batch(range(96))
    pictures = videos[:, 0]  # (N, 64, 64, 1): held-out digits
    other = np.roll(np.arange(len(pictures)), 1)  # each picture's rival: the one before it
    disjoint = np.array([not set(labels[i]) & set(labels[j]) for i, j in enumerate(other)])
    asked = reader.label_scores(pictures, labels)  # the labels each picture shows
    rival = reader.label_scores(pictures[other], labels)  # the same labels, asked of a picture of other digits
    wins = (asked > rival).numpy()[disjoint]
    assert len(wins) > 50 and wins.mean() > 0.75, wins.mean()


# ---------------------------------------------------------------- files


def test_save_and_load_give_the_same_reader(tmp_path):
    torch.manual_seed(1)
    reader = LabelReader(TINY)
    reader.save_pretrained(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.json", "model.safetensors"]
    envelope = json.loads((tmp_path / "r" / "config.json").read_text())
    assert envelope["kind"] == "reader" and envelope["config"] == TINY.to_dict() and "arvid_version" in envelope
    loaded = LabelReader.from_pretrained(tmp_path / "r", device="cpu")
    assert loaded.config == TINY and not loaded.training
    for k, t in reader.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], t), k
    pictures = np.random.default_rng(0).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    labels = np.array([[0, 1], [2, -1], [5, 5], [9, 8]])
    assert torch.equal(loaded.label_scores(pictures, labels), reader.label_scores(pictures, labels))
    no_temporaries(tmp_path)


def _corrupt(folder, how):
    if how == "no folder":
        shutil.rmtree(folder)
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "garbage config":
        (folder / "config.json").write_text("{not json")
    elif how == "another kind":
        text = (folder / "config.json").read_text()
        (folder / "config.json").write_text(text.replace('"reader"', '"generator"'))
    elif how == "another width":
        envelope = json.loads((folder / "config.json").read_text())
        envelope["config"]["width"] = 8
        (folder / "config.json").write_text(json.dumps(envelope))
    elif how == "bad config":
        envelope = json.loads((folder / "config.json").read_text())
        envelope["config"]["size"] = [16]
        (folder / "config.json").write_text(json.dumps(envelope))


@pytest.mark.parametrize("how,match", [
    ("no folder", "does not exist"), ("no weights", "has no model.safetensors"),
    ("truncated", "truncated or corrupt"), ("garbage config", "config.json"),
    ("another kind", "describes a 'generator' model, not a 'reader'"),
    ("another width", "does not match the model built from its config.json"), ("bad config", "size"),
])
def test_a_missing_corrupt_or_mismatched_folder_is_one_clear_error(tmp_path, how, match):
    LabelReader(TINY).save_pretrained(tmp_path / "r")
    _corrupt(tmp_path / "r", how)
    with pytest.raises(ArvidError, match=match) as e:
        LabelReader.from_pretrained(tmp_path / "r")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- arvid train reader


def test_the_training_run_folder_is_a_reader_folder_with_its_held_out_accuracy_logged(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "reader", "--out", str(out), "--steps", "4", "--batch-size", "6", "--frames-per-clip", "3",
            "--width", "4", "--size", "32", "--eval-every", "2", "--eval-frames", "8", "--ckpt-every", "2",
            "--device", "cpu"]
    assert main(args) == 0
    reader = LabelReader.from_pretrained(out)
    assert reader.config == ReaderConfig(num_classes=10, channels=1, size=(32, 32), width=4)
    header, *rows = (out / "log.csv").read_text().splitlines()
    assert "eval_accuracy" in header.split(",") and rows[-1].startswith("4,")
    assert "trained reader to step 4" in capsys.readouterr().out
    assert main([*args[:5], "6", *args[6:], "--resume"]) == 0  # --resume continues it, with the run's options
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 6


def test_the_reader_trains_with_its_own_defaults(capsys):
    assert main(["train", "reader", "--help"]) == 0
    text = capsys.readouterr().out
    for said in ("--steps STEPS", "total optimizer steps (default 5000)", "--batch-size", "(default 64)",
                 "--frames-per-clip", "--width", "eval_accuracy"):
        assert said in text, said


def test_an_unlabelled_dataset_is_refused_with_what_to_do(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):  # videos straight in the folder: no class subfolders, so no labels
        np.save(videos / f"clip{i}.npy", np.zeros((8, 32, 32, 1), np.uint8))
    refused(capsys, "train", "reader", "--out", tmp_path / "run", "--dataset", "folder", "--data-path", videos,
            "--size", "32", "--steps", "2", match="has no labels")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a model folder's reader/


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A conditional tiny layered tokenizer + generator (16x16 frames, two labels of 10 classes), a 16x16 reader,
    and a conv tokenizer + generator, which draw no reference for a reader to pick."""
    from arvid.generator import Generator, GeneratorConfig
    from arvid.tokenizer import LayeredConfig, LayeredTokenizer, Tokenizer, TokenizerConfig

    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    ref = TokenizerConfig.preset("tiny", spatial_factor=8, patch=2).to_dict()
    tok = LayeredTokenizer(LayeredConfig(reference=ref, size=(16, 16), layers=2, lookahead=1))
    tok.save_pretrained(root / "tok")
    Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=2, latent_w=2,
                                        num_classes=10, labels_per_clip=2)).save_pretrained(root / "gen")
    conv = Tokenizer(TokenizerConfig.preset("tiny"))
    conv.save_pretrained(root / "conv")
    Generator(GeneratorConfig.from_name("tiny", vocab_size=conv.codebook_size, latent_h=4, latent_w=4,
                                        num_classes=10, labels_per_clip=2)).save_pretrained(root / "conv-gen")
    LabelReader(TINY).save_pretrained(root / "reader")
    LabelReader(ReaderConfig(size=(64, 64), width=4)).save_pretrained(root / "reader64")
    return root


def test_pack_carries_a_reader_and_refuses_one_that_cannot_read_the_model(parts, tmp_path, capsys):
    pack = ["pack", "--tokenizer", parts / "tok", "--generator", parts / "gen"]
    assert main([str(a) for a in [*pack, "--reader", parts / "reader", "--out", tmp_path / "m"]]) == 0
    assert "a label reader of 10 classes" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["generator", "reader", "tokenizer"]
    packed, given = LabelReader.from_pretrained(tmp_path / "m" / "reader"), LabelReader.from_pretrained(parts / "reader")
    assert all(torch.equal(packed.state_dict()[k], t) for k, t in given.state_dict().items())
    assert main([str(a) for a in [*pack, "--out", tmp_path / "plain"]]) == 0  # without one: as before
    assert not (tmp_path / "plain" / "reader").exists()
    refused(capsys, *pack, "--reader", parts / "reader64", "--out", tmp_path / "bad", match="reads 64x64 pictures")
    refused(capsys, *pack, "--reader", parts / "nothing", "--out", tmp_path / "bad", match="does not exist")
    refused(capsys, "pack", "--tokenizer", parts / "conv", "--generator", parts / "conv-gen", "--reader",
            parts / "reader", "--out", tmp_path / "bad", match="not layered")
    assert not (tmp_path / "bad").exists()


def test_info_describes_a_model_folders_reader(parts, tmp_path, monkeypatch, capsys):
    import arvid.info
    from arvid.cli.info import _table

    assert main([str(a) for a in ["pack", "--tokenizer", parts / "tok", "--generator", parts / "gen", "--reader",
                                  parts / "reader", "--out", tmp_path / "m"]]) == 0
    monkeypatch.setattr(arvid.info, "DEFAULT_MODEL_DIR", tmp_path / "m")
    info = arvid.info.default_model_info()
    assert info["reader"] == TINY.to_dict() and "generator" in info
    assert "  reader: num_classes=10, channels=1, size=[16, 16], width=4" in _table(arvid.info.collect_info())
    shutil.rmtree(tmp_path / "m" / "reader")
    assert "reader" not in arvid.info.default_model_info()
    assert "reader:" not in _table(arvid.info.collect_info())
