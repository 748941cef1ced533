"""Digit identity over time (arvid/eval/identity.py): the reader, finding digits, tracking, switches, and the
identity section of `arvid eval generation`."""

import json

import numpy as np
import pytest
import torch

from arvid.data import make_dataset, mnist_digits
from arvid.data.moving_mnist import DIGIT
from arvid.eval.identity import (clip_identity, find_digits, heldout_accuracy, identity_figures, identity_reader,
                                 link, read_clip, read_crops, track, track_switches, train_identity_reader)

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def reader():
    """The reader `arvid eval generation` uses (trained once per process: the eval test below shares it)."""
    return identity_reader()


def place(size: int = 64, frames: int = 1, **digits) -> np.ndarray:
    """uint8 (T, H, W, 1): each named digit (28x28) at its top-left corners (T, 2), combined by maximum."""
    video = np.zeros((frames, size, size), np.uint8)
    for digit, corners in digits.values():
        for t, (y, x) in enumerate(corners):
            if digit is None:
                continue
            patch = video[t, y:y + DIGIT, x:x + DIGIT]
            np.maximum(patch, digit[t] if digit.ndim == 3 else digit, out=patch)
    return video[..., None]


def confident_digit(reader, cls: int) -> np.ndarray:
    """The first held-out digit of class `cls` that the reader reads right and confidently, alone: uint8 (28, 28)."""
    digits, labels = mnist_digits("eval")
    cand = digits[labels == cls]
    got, conf = read_crops(reader, cand.astype(np.float32) / 255)
    return cand[np.flatnonzero((got == cls) & (conf >= 0.97))[0]]


def test_the_reader_is_deterministic():
    a, b = train_identity_reader(steps=3), train_identity_reader(steps=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = train_identity_reader(steps=3, seed=1)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_the_reader_reads_held_out_digits(reader):
    assert heldout_accuracy(reader) >= 0.95
    assert heldout_accuracy(train_identity_reader(steps=0)) < 0.3  # untrained: the measure is not the finder's


def test_real_held_out_clips_switch_rarely_and_are_mostly_read(reader):
    ds = make_dataset("moving-mnist", frames=32, size=64, split="eval", seed=1)
    clips = np.stack([ds[i].video for i in range(16)])  # (16, 32, 64, 64, 1)
    figs = identity_figures(clips, reader)
    assert figs["tracked_steps"] > 250
    assert figs["switches_per_100"] <= 1.0
    assert 0.3 <= figs["confident_share"] <= 1
    assert figs["reader_accuracy"] >= 0.95
    assert identity_figures(clips[..., 0], reader) == figs  # (N, T, H, W) too


def test_a_digit_replaced_by_another_class_mid_clip_counts_one_switch(reader):
    three, seven = confident_digit(reader, 3), confident_digit(reader, 7)
    path = np.stack([np.full(16, 18), 4 + 2 * np.arange(16)], axis=1)  # moving right, 2 px a frame
    glyphs = np.stack([three] * 8 + [seven] * 8)
    same = clip_identity(reader, place(frames=16, a=(np.stack([three] * 16), path)), expected=1)
    swapped = clip_identity(reader, place(frames=16, a=(glyphs, path)), expected=1)
    assert same["switches"] == 0 and same["tracked_steps"] == 15 and same["confident_reads"] == 16
    assert swapped["switches"] == 1 and swapped["tracked_steps"] == 15


def test_a_blanked_or_smeared_digit_is_not_read(reader):
    one, six = confident_digit(reader, 1), confident_digit(reader, 6)
    a = (one, [(4, 4)] * 6)
    b = (six, [(32, 34)] * 6)
    full = place(frames=6, a=a, b=b)
    blanked = full.copy()
    blanked[2:4, 32:, 34:] = 0  # the 6 gone for two frames
    smeared = full.copy()
    smeared[4:, 30:62, 30:62] = 200  # the 6 under a blob too large to be one digit
    assert clip_identity(reader, full)["confident_reads"] == 12
    assert clip_identity(reader, blanked)["confident_reads"] == 10
    d = find_digits(smeared[4])
    assert len(d.legible) == 2 and d.legible.sum() == 1  # found, not legible
    figs = clip_identity(reader, smeared)
    assert figs["confident_reads"] == 10 and figs["expected"] == 12 and figs["switches"] == 0
    assert len(find_digits(np.zeros((64, 64), np.uint8)).legible) == 0


def test_the_tracker_follows_two_digits_across_a_bounce(reader):
    two, five = confident_digit(reader, 2), confident_digit(reader, 5)
    t = np.arange(18)
    span = 64 - DIGIT  # a digit's corner stays in [0, span]
    path_a = np.stack([np.full(18, 2), span - np.abs(span - (21 + 3 * t))], axis=1)  # right, bounce, left
    path_b = np.stack([np.full(18, 36), np.abs(30 - 3 * t)], axis=1)  # left, bounce at x = 0, right
    assert path_a[:, 1].max() == span and path_b[:, 1].min() == 0
    frames = read_clip(reader, place(frames=18, a=(two, path_a), b=(five, path_b)))
    tracks = track(frames)
    assert len(tracks) == 2 and all(len(tr) == 18 for tr in tracks)
    for tr in tracks:  # each track stays on one digit: its centroid keeps its row, and follows its digit's column
        rows = np.array([frames[t].centroids[j][0] for t, j in tr])
        cols = np.array([frames[t].centroids[j][1] for t, j in tr])
        corners = path_a if rows[0] < 32 else path_b
        assert np.ptp(rows) < 1 and np.ptp(cols - corners[:, 1]) < 1
    assert track_switches(frames, tracks) == (0, 34)


def test_links_are_one_to_one_nearest_first_and_bounded():
    prev = np.array([[10.0, 10.0], [10.0, 20.0]])
    cur = np.array([[10.0, 19.0], [10.0, 12.0], [50.0, 50.0]])
    assert sorted(link(prev, cur)) == [(0, 1), (1, 0)]
    assert link(prev, cur[2:]) == []  # too far
    assert link(prev[:1], cur[:2]) == [(0, 1)]  # one to one: the nearer
    assert link(prev[:0], cur) == []


def test_the_generation_report_shows_identity_beside_real_clips(tmp_path, reader):
    from arvid.cli.main import main
    from arvid.generator import Generator, GeneratorConfig
    from arvid.kernels import use_backend
    from arvid.pipeline import Arvid
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny", spatial_factor=16, patch=4))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4,
                                              num_classes=10, labels_per_clip=2))
    Arvid(tok, gen, "cpu").save_pretrained(tmp_path / "model")
    out = tmp_path / "report"
    with use_backend("pytorch"):
        code = main(["eval", "generation", "--model", str(tmp_path / "model"), "--out", str(out), "--clips", "2",
                     "--frames", "6", "--long-clips", "0", "--tokenizer-clips", "0", "--reader-steps", "0",
                     "--sweep", "", "--guidance-sweep", ""])
    assert code == 0
    cons = json.loads((out / "figures.json").read_text())["figures"]["consistency"]
    assert cons["identity_reader"]["heldout_accuracy"] >= 0.95
    for name in ("real", "tokenizer reconstruction", "generated", "no-context ablation"):
        ident = cons[name]["identity"]
        assert {"switches_per_100", "confident_share", "tracked_steps", "switches"} <= set(ident)
        assert 0 <= ident["confident_share"] <= 1 and ident["expected"] > 0
        assert "mean" in cons[name]  # the warping-error figures stay
    assert cons["real"]["identity"]["expected"] == 2 * 2 * 6  # 2 digits a frame, 2 clips of 6 frames
    report = (out / "report.md").read_text()
    assert "## Identity (2 clips of 6 frames" in report
    assert "| real | " in report.split("## Identity")[1] and "| generated | " in report.split("## Identity")[1]
