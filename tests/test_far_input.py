"""An input far from a model's training data (colour footage into the gray Moving MNIST model) is said, in one
`ArvidNotice` line, by the API and by `arvid extend`; an input like the training data is not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from arvid import ArvidNotice
from arvid.cli.main import main
from arvid.data import make_dataset
from arvid.data.stats import KNOWN, dataset_stats, differences, far_notice, pixel_stats, training_stats
from arvid.kernels import use_backend
from arvid.pipeline import DEFAULT_MODEL_DIR, Arvid
from corpus import tiny_model_dir


def street(T: int = 5, H: int = 120, W: int = 160) -> np.ndarray:
    """Colour footage, bright: a blue sky over a green-brown ground with a red car driving by, uint8 (T, H, W, 3)."""
    frames = np.empty((T, H, W, 3), np.uint8)
    frames[:, : H // 2] = (110, 160, 230)
    frames[:, H // 2:] = (120, 140, 70)
    for t in range(T):
        frames[t, H // 2 - 10: H // 2 + 10, 20 + 8 * t: 60 + 8 * t] = (200, 30, 40)
    return frames


def said(call) -> list[str]:
    """The ArvidNotice messages `call()` warns with."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if w.category is ArvidNotice]


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    """A tiny 16x16 gray model whose tokenizer's notes say it was trained on Moving MNIST."""
    return tiny_model_dir(tmp_path_factory.mktemp("model"), notes={"dataset": "moving-mnist", "size": 64})


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):
        yield


def test_the_known_datasets_statistics_are_the_datasets_own():
    for name, (stats, _) in KNOWN.items():
        measured = dataset_stats(make_dataset(name, frames=16, size=64, split="train", seed=0), clips=32)
        for key in ("brightness", "dark", "colour"):
            assert getattr(measured, key) == pytest.approx(getattr(stats, key), abs=1e-3), (name, key)


def test_the_shipped_model_knows_it_was_trained_on_moving_mnist_and_says_colour_footage_is_far():
    model = Arvid.from_pretrained(DEFAULT_MODEL_DIR, device="cpu")
    assert training_stats(model.tokenizer.config.notes) == KNOWN["moving-mnist"]
    far = [m for m in said(lambda: model.extend(street(), 1)) if "far from" in m]
    assert len(far) == 1 and "Moving MNIST" in far[0] and "in colour" in far[0] and "brightness" in far[0]
    clip = make_dataset("moving-mnist", frames=16, size=64, split="eval", seed=3)[0].video
    assert said(lambda: model.extend(clip, 1)) == []


def test_far_input_is_said_by_extend_stream_and_prepare_alike(mnist_model):
    model = Arvid.from_pretrained(mnist_model, device="cpu")
    footage = street()
    for call in (lambda: model.extend(footage, 1), lambda: list(model.stream(1, footage)),
                 lambda: model.extend(footage[None].repeat(2, axis=0), 1)):
        far = [m for m in said(call) if "far from" in m]
        assert len(far) == 1 and "\n" not in far[0], far
    streamed = model.prepare_stream(iter(footage), len(footage))  # as `arvid extend` reads a file
    assert streamed.notes == model.prepare(footage).notes
    digits = make_dataset("moving-mnist", frames=5, size=64, split="eval", seed=1)
    for i in range(4):  # resized to the tiny model's 16x16, but like its training data: no word on that
        assert not [m for m in model.prepare(digits[i].video).notes if "far from" in m]
    assert not said(lambda: model.extend(np.zeros((3, 16, 16, 1), np.uint8), 1))  # a black clip: fits


def test_arvid_extend_prints_the_notice(mnist_model, tmp_path, capsys):
    from arvid.video import write_video

    write_video(tmp_path / "street.npy", street())
    assert main(["extend", str(tmp_path / "street.npy"), "--model", str(mnist_model), "--frames", "1",
                 "--out", str(tmp_path / "out.npy")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "far from" in line]
    assert len(lines) == 1 and lines[0].startswith("arvid: this input is far from what the model was trained on")


def test_what_counts_as_far():
    mnist, _ = KNOWN["moving-mnist"]
    shapes, _ = KNOWN["shapes"]
    assert differences(mnist, mnist) == [] and differences(shapes, shapes) == []
    assert differences(pixel_stats(street()), shapes)  # bright footage into the shapes model
    gray_street = pixel_stats(street().mean(-1, keepdims=True).astype(np.uint8))
    assert "it is gray, the training clips are in colour" in differences(gray_street, shapes)
    assert far_notice(pixel_stats(street()), {}) is None  # nothing known of the training data: nothing said
    assert far_notice(mnist, {"dataset": "moving-mnist"}) is None
    stored = {"dataset": "my-folder", "data_stats": {"brightness": 0.5, "dark": 0.1, "colour": 0.2}}
    assert "its training clips (my-folder)" in far_notice(mnist, stored)
