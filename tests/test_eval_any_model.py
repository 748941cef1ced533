"""`arvid eval generation` measures any model on its own kind of data: bouncing shapes, or a folder of videos (its
held-out files; a folder too small to hold any out is said to be measured on training files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arvid.cli.main import main
from arvid.eval.generation import frame_psnr
from arvid.kernels import use_backend
from corpus import tiny_model_dir

pytest.importorskip("cv2")
FAST = ["--clips", "2", "--context", "3", "--predict", "2", "--frames", "4", "--batch", "2", "--sweep", "",
        "--tokenizer-clips", "1"]


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """A tiny untrained 32x32 colour model (4x4 latent tokens, τ = 2), unconditional."""
    return tiny_model_dir(tmp_path_factory.mktemp("model"), channels=3, spatial_factor=8, patch=2)


@pytest.fixture(autouse=True)
def fast_attention():
    with use_backend("pytorch"):
        yield


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["eval", "generation", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def moving_clips(root, n: int, T: int = 20, size: int = 32):
    """`n` colour clips of a square moving right, each its own colour, as .npy files under `root`."""
    root.mkdir()
    for i in range(n):
        clip = np.full((T, size, size, 3), 40, np.uint8)
        for t in range(T):
            clip[t, 10:18, t % (size - 8): t % (size - 8) + 8] = (200, 30 * i, 255 - 30 * i)
        np.save(root / f"clip_{i:02d}.npy", clip)
    return root


def test_psnr_per_frame_is_of_the_clips_mean_error():
    true = np.zeros((2, 2, 4, 4, 1), np.uint8)
    pred = true.copy()
    pred[0, 1] = 255  # clip 0's frame 1 all wrong, clip 1 right: mean squared error 255²/2
    psnr = frame_psnr(pred, true)
    assert psnr[0] == np.inf and psnr[1] == pytest.approx(10 * np.log10(2))


def test_a_colour_model_is_measured_on_shapes_without_the_digit_measures(colour_model, tmp_path, capsys):
    code, out, err = run(capsys, "--model", colour_model, "--dataset", "shapes", "--out", tmp_path / "r", *FAST)
    assert code == 0, err
    figures = json.loads((tmp_path / "r" / "figures.json").read_text())
    assert figures["data"]["dataset"] == "shapes" and figures["data"]["held_out"]
    assert not figures["data"]["labelled"] and not figures["data"]["digits"]
    cont = figures["figures"]["continuation"]
    assert set(cont) == {"greedy", "sampled", "floor", "copy last"}
    assert all(len(r["psnr"]) == 2 and np.isfinite(r["mean_psnr"]) for r in cont.values())
    cons = figures["figures"]["consistency"]
    assert {"real", "generated", "no-context ablation"} <= set(cons)
    assert not any("labels" in v or "identity" in v for v in cons.values() if isinstance(v, dict))
    assert "long" not in figures["figures"] and figures["settings"]["long_clips"] == 0
    assert cons["guidance_sweep"]["scales"] == [1.0]  # no labels: no guidance
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Held-out shapes clips; no labels are given to the model." in report
    assert "are not run" in report and "sum over the 32x32x3 frame" in report and "PSNR (dB)" in report
    assert "Tokenizer (17-frame held-out clips)" in report


def test_a_folder_model_is_measured_on_its_held_out_files_or_says_they_are_not(colour_model, tmp_path, capsys):
    mine = moving_clips(tmp_path / "mine", 5)
    code, out, err = run(capsys, "--model", colour_model, "--dataset", "folder", "--data-path", mine,
                         "--out", tmp_path / "r", *FAST)
    assert code == 0, err
    figures = json.loads((tmp_path / "r" / "figures.json").read_text())
    assert figures["data"]["held_out"] and figures["data"]["notice"].startswith("held out for evaluation: 1 of 5 files")
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Held-out clips of" in report and "Held out for evaluation: 1 of 5 files" in report
    assert "held out for evaluation: 1 of 5 files" in out
    small = moving_clips(tmp_path / "small", 2)
    code, out, err = run(capsys, "--model", colour_model, "--data-path", small, "--out", tmp_path / "s", *FAST)
    assert code == 0, err
    figures = json.loads((tmp_path / "s" / "figures.json").read_text())
    assert not figures["data"]["held_out"]
    report = (tmp_path / "s" / "report.md").read_text()
    assert "not held out" in report and "held-out" not in report.lower().replace("## tokenizer", "")


def test_clips_the_model_cannot_take_are_refused_in_one_line(colour_model, tmp_path, capsys):
    for args, message in (
        (["--dataset", "moving-mnist"], "but moving-mnist clips have 1: measure it on its own kind of data"),
        (["--dataset", "folder"], "needs --data-path DIR"),
        (["--dataset", "shapes", "--data-path", tmp_path], "--data-path is for --dataset folder"),
        (["--data-path", tmp_path / "nope"], "is not a folder"),
    ):
        code, _, err = run(capsys, "--model", colour_model, "--out", tmp_path / "x", *args, *FAST)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    assert not (tmp_path / "x").exists()


def test_a_folder_of_videos_too_short_for_the_clips_is_one_line(colour_model, tmp_path, capsys):
    short = moving_clips(tmp_path / "short", 4, T=4)
    code, out, err = run(capsys, "--model", colour_model, "--data-path", short, "--out", tmp_path / "r", *FAST)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "has 5 frames" in lines[0] and "lower --frames" in lines[0], lines
    assert not (tmp_path / "r").exists()
