"""`arvid eval generation`: its measures on hand-made clips, and the report through the CLI."""

import json

import numpy as np
import pytest
import torch

from arvid.cli.main import main
from arvid.generator import Generator, GeneratorConfig, Sampling
from arvid.eval.generation import (BlockStats, blob_count, collapse_rule, collapsed, frame_mse, motion, rollout,
                                     sharpness, speed, warping_error)
from arvid.kernels import use_backend
from arvid.pipeline import Arvid
from arvid.tokenizer import Tokenizer, TokenizerConfig

cv2 = pytest.importorskip("cv2")


def disc_clip(frames=6, dx=2, size=64, r=6):
    """A bright disc moving right by dx pixels a frame: uint8 (T, H, W, 1)."""
    yy, xx = np.mgrid[:size, :size]
    clip = [((yy - 30) ** 2 + (xx - 15 - dx * t) ** 2 <= r * r) * 255 for t in range(frames)]
    return np.stack(clip).astype(np.uint8)[..., None]


def test_warping_error_is_zero_for_a_still_clip_small_for_motion_and_large_for_noise():
    still = np.repeat(disc_clip(1), 5, axis=0)
    assert warping_error(still) == 0.0
    moving = warping_error(disc_clip())
    noise = warping_error(np.random.default_rng(0).integers(0, 256, (5, 64, 64, 1), dtype=np.uint8))
    assert moving < 0.01 < 0.2 < noise
    # warping beats no motion model at all: the flow explains most of the change
    plain = np.abs(np.diff(disc_clip().astype(np.float64), axis=0)).mean() / 255
    assert moving < 0.5 * plain


def test_motion_is_zero_for_a_still_clip_and_grows_with_speed():
    assert motion(np.repeat(disc_clip(1), 5, axis=0)) == 0.0
    assert 0 < motion(disc_clip(dx=1)) < motion(disc_clip(dx=3))


def test_speed_is_the_distance_moved_and_ignores_flicker():
    assert speed(np.repeat(disc_clip(1), 5, axis=0)) == pytest.approx(0, abs=0.05)
    assert speed(disc_clip(dx=1)) == pytest.approx(1, abs=0.3) and speed(disc_clip(dx=3)) == pytest.approx(3, abs=0.6)
    clip = disc_clip(dx=2).astype(np.int16)
    flicker = np.clip(clip + np.where(np.arange(6) % 2, 0, -60).reshape(6, 1, 1, 1) * (clip > 0), 0, 255)
    flicker = flicker.astype(np.uint8)  # the disc dims every other frame: more motion, the same speed
    assert motion(flicker) > 1.2 * motion(disc_clip(dx=2))
    assert speed(flicker) == pytest.approx(speed(disc_clip(dx=2)), abs=0.3)
    assert speed(np.zeros((3, 16, 16, 1), np.uint8)) == 0.0  # nothing bright: nothing measured


def test_sharpness_falls_with_blur_not_with_motion():
    import cv2

    clip = disc_clip(dx=2)
    blurred = np.stack([cv2.GaussianBlur(f, (7, 7), 2)[..., None] for f in clip])
    assert sharpness(clip) == pytest.approx(sharpness(disc_clip(dx=0)), rel=0.05)  # moving keeps the edges
    assert sharpness(blurred) < 0.7 * sharpness(clip)
    assert sharpness(np.zeros((3, 16, 16, 1), np.uint8)) == 0.0


def test_blobs_count_digits_and_ignore_specks():
    frame = np.zeros((64, 64, 1), np.uint8)
    frame[5:15, 5:12] = 255
    frame[40:50, 30:45] = 200
    frame[60, 60] = 255  # a speck
    assert blob_count(frame) == 2
    assert blob_count(np.zeros((64, 64, 1), np.uint8)) == 0


def test_frame_mse_is_the_per_frame_sum_over_pixels_in_unit_range():
    a = np.zeros((2, 3, 4, 4, 1), np.uint8)
    b = a.copy()
    b[0, 1, 0, 0] = 255  # one full-scale pixel in clip 0, frame 1
    b[1, 2, :2, :2] = 255  # four in clip 1, frame 2
    np.testing.assert_allclose(frame_mse(b, a), [0.0, 0.5, 2.0])


def test_collapse_rule_flags_blank_and_saturated_clips_not_real_ones():
    two = np.maximum(disc_clip(128, dx=0), np.roll(disc_clip(128, dx=0), 30, axis=2))  # two still discs
    real = np.stack([two, two])  # (2, 128, H, W, 1)
    rs = BlockStats(2)
    for t in range(128):
        rs.push(real[:, t])
    ri, rb, rm = rs.arrays()
    rule = collapse_rule(ri, rb)
    lost = np.concatenate([two[:1].repeat(1, 0), disc_clip(127, dx=0)])  # a digit lost for good
    clips = np.stack([two, np.zeros_like(two), np.full_like(two, 255), lost])
    gs = BlockStats(4)
    for t in range(128):
        gs.push(clips[:, t])
    assert collapsed(*gs.arrays(), rule).tolist() == [False, True, True, True]
    assert not collapsed(*rs.arrays(), rule).any()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained 64x64 model: 4x4 latent tokens, τ = 2."""
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny", spatial_factor=16, patch=4))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4,
                                              num_classes=10, labels_per_clip=2))
    root = tmp_path_factory.mktemp("model")
    Arvid(tok, gen, "cpu").save_pretrained(root)
    return root


def test_the_ablation_samples_each_latent_frame_alone(model_dir):
    model = Arvid.from_pretrained(model_dir, device="cpu")
    labels = np.array([[1, 2], [3, 4]])
    with use_backend("pytorch"):
        abl = np.stack(list(rollout(model, 5, Sampling(), labels=labels, seed=3, no_context=True, batch=2)), axis=1)
        ctx = np.stack(list(rollout(model, 5, Sampling(), labels=labels, seed=3, batch=2)), axis=1)
        # latent frame 0 of the ablation is the first frame of a new clip with the ablation's seed for frame 0
        alone = np.stack(list(rollout(model, 1, Sampling(), labels=labels, seed=3 * 100_003, batch=2)), axis=1)
    assert abl.shape == ctx.shape == (2, 5, 64, 64, 1)
    np.testing.assert_array_equal(abl[:, :1], alone)
    assert not np.array_equal(abl, ctx)


def test_cli_writes_the_report_and_refuses_bad_input(model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    with use_backend("pytorch"):
        code = main(["eval", "generation", "--model", str(model_dir), "--out", str(out), "--clips", "2",
                     "--frames", "4", "--long-clips", "2", "--long-frames", "64", "--tokenizer-clips", "1",
                     "--reader-steps", "5"])
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "figures.json", "continuation.png", "consistency.png", "long_clips.png"} <= names
    figures = json.loads((out / "figures.json").read_text())
    cont = figures["figures"]["continuation"]
    assert set(cont) == {"greedy", "sampled", "floor", "copy last"} and len(cont["greedy"]["mse"]) == 10
    assert len(figures["checks"]) == 5 and "collapses" in figures["figures"]["long"]
    assert figures["checks"][3]["check"].startswith("diagnostic, not a target")
    cons = figures["figures"]["consistency"]
    assert {"real", "tokenizer reconstruction", "generated", "no-context ablation",
            "generated, temperature 0", "generated, temperature 0.5"} <= set(cons)
    assert cons["sweep"]["temperatures"] == [0.0, 0.3, 0.5, 0.7, 1.0]
    assert cons["sweep"]["names"][0] == "generated, temperature 0" and cons["sweep"]["names"][-1] == "generated"
    rows = {k: v for k, v in cons.items() if "mean" in v}
    assert all(v["motion"] >= 0 and v["speed"] >= 0 and v["sharpness"] >= 0 and 0 <= v["labels"] <= 1
               for v in rows.values())
    # no sampling.json in this model: guidance is off by default, and the sweep adds scale 5 beside it
    assert figures["settings"]["sampling"] == Sampling().to_dict()
    assert cons["guidance_sweep"] == {"scales": [1.0, 5.0], "names": ["generated", "generated, guidance 5"]}
    report = (out / "report.md").read_text()
    assert "## Acceptance checks" in report and "H.264" in report
    capsys.readouterr()
    assert main(["eval", "generation", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--clips", "0"]) == 2
    assert "--clips must be at least 1" in capsys.readouterr().err
    assert main(["eval", "generation", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--sweep", "0,hot"]) == 2
    assert "--sweep takes comma-separated temperatures" in capsys.readouterr().err
    assert main(["eval", "generation", "--model", str(model_dir), "--out", str(tmp_path / "x"),
                 "--guidance-sweep", "-2"]) == 2
    assert "--guidance-sweep values must lie in [0, 100]" in capsys.readouterr().err
    for flag, value, message in (("--temperature", "-1", "--temperature must be >= 0 (0: greedy), got -1.0"),
                                 ("--min-p", "3", "--min-p must be in [0, 1] (0: off), got 3.0")):
        assert main(["eval", "generation", "--model", str(model_dir), "--out", str(tmp_path / "x"), flag, value]) == 2
        assert message in capsys.readouterr().err  # the same words as generate's, in the flag's name
    assert not (tmp_path / "x").exists()


def test_a_frame_shows_its_labels_only_when_the_reader_finds_exactly_them():
    from arvid.eval.digits import label_hits

    class Fixed(torch.nn.Module):  # frame n's logits are row n, whatever the pixels
        def __init__(self, rows):
            super().__init__()
            self.rows = torch.tensor(rows, dtype=torch.float32)

        def forward(self, x):
            return self.rows[: len(x)]

    rows = [[0] * 10 for _ in range(3)]
    rows[0][3], rows[0][7] = 5, 4  # reads 3 and 7
    rows[1][3], rows[1][1] = 5, 4  # reads 3 and 1
    rows[2][3], rows[2][7] = 5, 4  # reads 3 (then 7): one distinct label needs one class
    hits = label_hits(Fixed(rows), np.zeros((3, 8, 8, 1), np.uint8), np.array([[3, 7], [7, 3], [3, 3]]))
    assert hits.tolist() == [True, False, True]


def test_the_digit_reader_is_deterministic_and_learns_from_train_digits_only():
    """The reader's accuracy is what the report shows on real frames (0.82 after the eval's 1,200 steps);
    here, a few steps must already lower its loss on held-out digits, the same way every time."""
    import torch.nn.functional as F

    from arvid.data import make_dataset
    from arvid.eval.digits import _frames_to_tensor, _multi_hot, train_reader

    a, b = train_reader(steps=3), train_reader(steps=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    video, labels = make_dataset("moving-mnist", frames=4, size=64, split="eval", seed=5).batch(range(32))
    frames, target = _frames_to_tensor(video.reshape(-1, 64, 64, 1)), _multi_hot(np.repeat(labels, 4, axis=0))
    with torch.no_grad():
        before, after = (F.binary_cross_entropy_with_logits(r(frames), target).item()
                         for r in (train_reader(steps=0), train_reader(steps=40)))
    assert after < 0.8 * before, (before, after)
