"""Datasets: determinism, value ranges, shapes, and the train/eval split of MNIST digits."""

import numpy as np
import pytest

from arvid import ArvidError
from arvid.data import make_dataset, mnist_digits
from arvid.data.moving_mnist import _canonical_mnist, bounce_path


def test_mnist_split_is_disjoint_balanced_and_covers_all_digits():
    xt, yt = mnist_digits("train")
    xe, ye = mnist_digits("eval")
    assert xt.shape == (4000, 28, 28) and xe.shape == (1000, 28, 28)
    assert np.bincount(yt).tolist() == [400] * 10  # every class in both splits
    assert np.bincount(ye).tolist() == [100] * 10
    x_all, _ = _canonical_mnist()
    assert len({a.tobytes() for a in x_all}) == 5000  # canonical order is a permutation, no repeats
    train_set = {a.tobytes() for a in xt}
    assert not any(a.tobytes() in train_set for a in xe)


def test_moving_mnist_train_clips_use_only_train_digits():
    xt, _ = mnist_digits("train")
    xe, _ = mnist_digits("eval")
    ds = make_dataset("moving-mnist", frames=3, split="train", num_digits=1)
    train_set = {a.tobytes() for a in xt}
    eval_set = {a.tobytes() for a in xe}
    for i in range(20):
        c = ds[i]
        # with one digit, find it at its first-frame position: its 28x28 patch must be a training digit
        ys, xs = np.nonzero(c.video[0, ..., 0])
        # a digit may have empty border rows, so search the patch positions that contain the bbox
        found = False
        for y0 in range(max(0, ys.max() - 27), min(ys.min(), 36) + 1):
            for x0 in range(max(0, xs.max() - 27), min(xs.min(), 36) + 1):
                patch = c.video[0, y0 : y0 + 28, x0 : x0 + 28, 0].tobytes()
                if patch in train_set:
                    found = True
                assert patch not in eval_set
        assert found


@pytest.mark.parametrize("name,channels", [("moving-mnist", 1), ("shapes", 3)])
def test_synthetic_datasets_are_deterministic_and_well_formed(name, channels):
    a = make_dataset(name, frames=9, size=64, seed=3)
    b = make_dataset(name, frames=9, size=64, seed=3)
    c = make_dataset(name, frames=9, size=64, seed=4)
    for i in (0, 7, 12345):
        assert np.array_equal(a[i].video, b[i].video) and np.array_equal(a[i].labels, b[i].labels)
    assert not np.array_equal(a[0].video, c[0].video)  # the seed matters
    assert not np.array_equal(a[0].video, a[1].video)  # the index matters
    v = a[5].video
    assert v.shape == (9, 64, 64, channels) and v.dtype == np.uint8
    assert v.max() > 100 and v.min() < 50  # objects and background are both there
    assert not np.array_equal(v[0], v[-1])  # things move
    labels = a[5].labels
    assert labels.dtype == np.int64 and labels.shape == (a.labels_per_clip,)
    assert ((0 <= labels) & (labels < a.num_classes)).all()


def test_eval_split_draws_other_clips_than_train():
    tr = make_dataset("moving-mnist", frames=4, split="train")
    ev = make_dataset("moving-mnist", frames=4, split="eval")
    assert not np.array_equal(tr[0].video, ev[0].video)


def test_bounce_path_stays_inside_and_moves_at_constant_speed():
    rng = np.random.default_rng(0)
    p = bounce_path(rng, 200, 36, 36, 3.0)
    assert p.min() >= 0 and p.max() <= 36
    step = np.abs(np.diff(p, axis=0)).sum(axis=1)
    assert step.max() <= 6 and (step > 0).mean() > 0.9


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(ArvidError, match="unknown dataset"):
        make_dataset("nope")
    with pytest.raises(ArvidError, match="split"):
        make_dataset("moving-mnist", split="test")
    with pytest.raises(ArvidError, match="frames"):
        make_dataset("shapes", frames=0)
    with pytest.raises(ArvidError, match="at least 28x28"):
        make_dataset("moving-mnist", size=16)
    with pytest.raises(ArvidError, match="needs a path"):
        make_dataset("folder")
    with pytest.raises(ArvidError, match="no video files"):
        make_dataset("folder", path=tmp_path)


def test_video_folder_samples_clips_with_stride_and_classes(tmp_path):
    for cls in ("bouncing", "falling"):
        (tmp_path / cls).mkdir()
        frames = np.zeros((30, 40, 48, 3), dtype=np.uint8)
        frames[:] = np.arange(30, dtype=np.uint8)[:, None, None, None] * 8  # frame number in the pixels
        np.save(tmp_path / cls / "a.npy", frames)
    ds = make_dataset("folder", path=tmp_path, frames=5, size=32, stride=3)
    assert ds.class_names == ("bouncing", "falling") and ds.num_classes == 2
    c = ds[0]
    assert c.video.shape == (5, 32, 32, 3)
    steps = np.diff(c.video[:, 16, 16, 0].astype(int))
    assert (steps == 24).all()  # stride 3 frames -> 3 * 8 intensity levels apart
    assert c.labels.shape == (1,) and 0 <= c.labels[0] < 2
    with pytest.raises(ArvidError, match="has 100 frames"):
        make_dataset("folder", path=tmp_path, frames=100)[0]
