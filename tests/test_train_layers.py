"""`arvid train layers` (`arvid.train.layers`): the composites it learns from, the best-order loss, and the
command, which makes a layered tokenizer folder around a reference coder.

The reference coder here is a tiny random conv tokenizer (preset "tiny", spatial factor 8) coding 32x32 frames:
a 4x4 latent grid, so 2 layers give τ = 4 frames per latent frame, as in tests/test_layered_tokenizer.py.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arvid.cli.main import main
from arvid.data.moving_mnist import mnist_digits
from arvid.reader import LabelReader, ReaderConfig
from arvid.tokenizer import LayeredTokenizer, Tokenizer, TokenizerConfig, load_tokenizer
from arvid.tokenizer.layers import InkRule
from arvid.train.layers import best_order_loss, composites, right_ink
from cli_cases import no_temporaries, refused

SIZE = 32
TOY = ["--size", str(SIZE), "--batch-size", "4", "--eval-every", "2", "--eval-frames", "8", "--ckpt-every", "2",
       "--device", "cpu"]


def tiny_reference(folder, channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    tok = Tokenizer(TokenizerConfig.preset("tiny", spatial_factor=8, patch=2, channels=channels))
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return tiny_reference(tmp_path_factory.mktemp("ref") / "tok")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, reference):
    """A layered tokenizer made by `arvid train layers` in 4 toy steps."""
    out = tmp_path_factory.mktemp("layers") / "run"
    assert main(["train", "layers", "--out", str(out), "--reference", str(reference), "--steps", "4", *TOY]) == 0
    return out


# ---------------------------------------------------------------- the composites


def test_each_ink_pixel_belongs_to_the_brightest_digit_there_and_dark_pixels_to_none():
    digits = np.stack([np.full((28, 28), 60, np.uint8), np.full((28, 28), 200, np.uint8)])  # two flat "digits"
    x, owner = composites(np.random.default_rng(0), digits, 64, 2, (48, 40), jitter=False)
    assert x.shape == (64, 1, 48, 40) and owner.shape == (64, 48, 40) and owner.dtype == torch.int64
    pixels = (x[:, 0] * 255).round()
    assert torch.equal(owner > 0, pixels > InkRule.low)  # ink is what is above `low`
    for p, o in zip(pixels, owner):
        for slot in o.unique().tolist()[1:]:
            assert len(p[o == slot].unique()) == 1  # a slot owns one digit's pixels, the brighter one where both are
    two = [set(p[o > 0].unique().tolist()) == {60.0, 200.0} for p, o in zip(pixels, owner)]
    assert sum(two) > 10  # frames that hold both digits, overlapping or not


def test_one_frame_in_ten_holds_fewer_digits_and_one_layer_owns_all_the_ink():
    digits = mnist_digits("train")[0]
    x, owner = composites(np.random.default_rng(1), digits, 200, 2, (64, 64), jitter=False)
    slots = torch.tensor([len(o.unique()) - 1 for o in owner])
    assert set(slots.tolist()) <= {1, 2} and 0 < (slots == 1).sum() < 50
    x, owner = composites(np.random.default_rng(1), digits, 8, 1, (64, 64), jitter=False)
    assert torch.equal(owner, ((x[:, 0] * 255).round() > InkRule.low).long())


def test_composites_are_a_function_of_the_seed_and_jitter_softens_them():
    digits = mnist_digits("train")[0]
    a, own_a = composites(np.random.default_rng([7, 3, 0]), digits, 8, 2, (64, 64))
    b, own_b = composites(np.random.default_rng([7, 3, 0]), digits, 8, 2, (64, 64))
    c, _ = composites(np.random.default_rng([7, 4, 0]), digits, 8, 2, (64, 64))
    assert torch.equal(a, b) and torch.equal(own_a, own_b) and not torch.equal(a, c)
    clean, _ = composites(np.random.default_rng([7, 3, 0]), digits, 8, 2, (64, 64), jitter=False)
    assert 0 < (a - clean).abs().mean() < 0.1 and a.min() >= 0 and a.max() <= 1


def test_the_task_learns_from_train_digits_only_and_its_batches_are_a_function_of_step_and_rank(reference):
    from arvid.train.layers import LayersTask, layered_config, reference_coder

    ref, keep = reference_coder(str(reference))
    task = LayersTask(layered_config(ref, keep, 2, SIZE, {}, "ref"), ref.state_dict(), seed=5)
    assert np.array_equal(task.train_digits, mnist_digits("train")[0]) and len(task.train_digits) == 4000
    x, owner = task.batch(3, 1, 2, 6, "cpu")
    assert x.shape == (6, 1, SIZE, SIZE) and owner.shape == (6, SIZE, SIZE)
    assert torch.equal(x, task.batch(3, 1, 2, 6, "cpu")[0]) and not torch.equal(x, task.batch(3, 0, 2, 6, "cpu")[0])


# ---------------------------------------------------------------- the loss


def brute_force_loss(logits, owner, ink_weight=4.0):
    """The definition: each frame's weighted mean cross-entropy under each slot order, the least one, averaged."""
    w = 1 + (ink_weight - 1) * (owner > 0).float()
    k = logits.shape[1] - 1
    per = [(F.cross_entropy(logits, torch.tensor([0, *p])[owner], reduction="none") * w).mean((1, 2))
           for p in itertools.permutations(range(1, k + 1))]
    return torch.stack(per).min(0).values.mean()


@pytest.mark.parametrize("k", [2, 3])
def test_the_loss_is_the_cross_entropy_under_each_frames_best_slot_order(k):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(5, k + 1, 12, 10, generator=g)
    owner = torch.randint(0, k + 1, (5, 12, 10), generator=g)
    torch.testing.assert_close(best_order_loss(logits, owner), brute_force_loss(logits, owner))


@pytest.mark.parametrize("k", [2, 3])
def test_a_perfect_prediction_in_any_slot_order_costs_nothing_and_a_wrong_one_costs(k):
    owner = torch.randint(0, k + 1, (4, 16, 16), generator=torch.Generator().manual_seed(0))
    for order in itertools.permutations(range(1, k + 1)):
        said = torch.tensor([0, *order])[owner]  # the right layers, under another name each
        logits = 30.0 * F.one_hot(said, k + 1).permute(0, 3, 1, 2).float()
        assert best_order_loss(logits, owner) < 1e-6
        right, ink = right_ink(logits, owner)
        assert torch.equal(right, ink)
    wrong = owner.clone()
    wrong[:, :8][owner[:, :8] == 1] = 2  # the top half of layer 1 given to layer 2: no order mends that
    logits = 30.0 * F.one_hot(wrong, k + 1).permute(0, 3, 1, 2).float()
    assert best_order_loss(logits, owner) > 1.0
    right, ink = right_ink(logits, owner)
    assert (right < ink).all()


# ---------------------------------------------------------------- the command


def test_the_run_folder_is_a_layered_tokenizer_around_the_reference_coder_that_codes_a_clip(trained, reference, capsys):
    tok = load_tokenizer(trained)
    assert isinstance(tok, LayeredTokenizer) and tok.config.layers == 2 and tok.config.size == (SIZE, SIZE)
    ref = Tokenizer.from_pretrained(reference)
    for name, t in ref.state_dict().items():  # copied whole, and never trained
        assert torch.equal(tok.reference.state_dict()[name], t), name
    assert tok.config.lookahead == tok.temporal_factor == 4  # 16 would not fit τ = 4
    notes = tok.config.notes
    assert notes["reference"] == str(reference) and "arvid train layers --reference" in notes["layer_net"]
    video = torch.rand(2, 1, 8, SIZE, SIZE) * 2 - 1  # T = 2·τ
    codes = tok.encode(video)
    assert codes.shape == (2, 3, 4, 4) and tok.decode(codes).shape == (2, 1, 8, SIZE, SIZE)
    header, *rows = (trained / "log.csv").read_text().splitlines()
    assert {"eval_ink_accuracy", "ink_accuracy"} <= set(header.split(",")) and rows[-1].startswith("4,")
    assert (trained / "preview.png").is_file()
    no_temporaries(trained)


def test_resume_continues_the_run_and_a_layered_reference_keeps_its_coder(trained, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["train", "layers", "--out", str(out), "--reference", str(trained), "--steps", "2", *TOY]) == 0
    first, second = load_tokenizer(trained), load_tokenizer(out)
    for name, t in first.reference.state_dict().items():
        assert torch.equal(second.reference.state_dict()[name], t), name
    assert main(["train", "layers", "--out", str(out), "--steps", "4", "--resume"]) == 0  # the run's own options
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 4
    assert "--steps 4" in load_tokenizer(out).config.notes["layer_net"]  # the notes say what made the folder
    assert "trained layers to step 4" in capsys.readouterr().out


def test_a_dataset_of_frames_not_made_of_known_objects_is_refused(reference, tmp_path, capsys):
    refused(capsys, "train", "layers", "--out", str(tmp_path / "o"), "--reference", str(reference),
            "--dataset", "shapes", match="only moving-mnist")


@pytest.mark.parametrize("how,match", [
    ("missing", "does not exist"),
    ("three channels", "codes 3-channel frames"),
    ("not a tokenizer", "not a 'tokenizer'"),
    ("size", "--size 36 does not fit"),
    ("layers", "--layers must be between 2 and 4"),
    ("none", "--reference is required"),
])
def test_a_reference_the_frames_do_not_fit_is_refused_in_one_line(reference, tmp_path, capsys, how, match):
    ref, extra = str(reference), []
    if how == "missing":
        ref = str(tmp_path / "nowhere")
    elif how == "three channels":
        ref = str(tiny_reference(tmp_path / "rgb", channels=3))
    elif how == "not a tokenizer":
        ref = str(tmp_path / "reader")
        LabelReader(ReaderConfig(num_classes=10, channels=1, size=(16, 16), width=4)).save_pretrained(ref)
    elif how == "size":
        extra = ["--size", "36"]
    elif how == "layers":
        extra = ["--layers", "1"]
    given = ["--reference", ref] if how != "none" else []
    refused(capsys, "train", "layers", "--out", str(tmp_path / "o"), *given, *extra, match=match)
    assert not (tmp_path / "o").exists()


def test_the_command_says_what_it_makes_and_its_defaults(capsys):
    assert main(["train", "layers", "--help"]) == 0
    text = capsys.readouterr().out
    for said in ("--reference DIR", "layered tokenizer", "(default 800)", "(default 16)", "eval_ink_accuracy",
                 "arvid train tokenizer --out runs/ref --init runs/tok --train-part decoder --frames 1"):
        assert said in text, said
