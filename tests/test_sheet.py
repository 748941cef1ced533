"""Contact sheets: grid geometry, every-k selection, labels, atomic PNG output."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from arvid.errors import ArvidError
from arvid.video import Video, contact_sheet
from arvid.video.sheet import GAP, sheet_indices


def numbered_clip(T: int, H: int = 16, W: int = 20, C: int = 3) -> np.ndarray:
    """Frame t is filled with the value 10 + t, so a tile tells which frame it shows."""
    return np.broadcast_to((10 + np.arange(T, dtype=np.uint8))[:, None, None, None], (T, H, W, C)).copy()


def tile(sheet: Image.Image, k: int, cols: int, h: int, w: int, top: int = 0) -> np.ndarray:
    x, y = GAP + (k % cols) * (w + GAP), top + GAP + (k // cols) * (h + GAP)
    return np.asarray(sheet)[y:y + h, x:x + w]


@pytest.mark.parametrize("T, every, cols, expected_grid", [(10, 1, None, (8, 2)), (10, 3, None, (4, 1)), (7, 2, 2, (2, 2))])
def test_size_matches_the_grid(T, every, cols, expected_grid):
    sheet = contact_sheet(numbered_clip(T), every=every, cols=cols, scale=2)
    c, r = expected_grid
    assert sheet.size == (c * 40 + (c + 1) * GAP, r * 32 + (r + 1) * GAP)
    assert sheet.mode == "RGB"


def test_every_kth_frame_in_order():
    T, every, cols = 11, 3, 2
    sheet = contact_sheet(numbered_clip(T), every=every, cols=cols, scale=1, labels=False)
    for k, frame in enumerate(range(0, T, every)):  # frames 0, 3, 6, 9
        assert (tile(sheet, k, cols, 16, 20) == 10 + frame).all()


def test_labels_are_drawn_in_the_corner_only():
    frames = numbered_clip(4, H=64, W=64)
    plain = np.asarray(contact_sheet(frames, labels=False, scale=1)).astype(int)
    labelled = np.asarray(contact_sheet(frames, labels=True, scale=1)).astype(int)
    assert plain.shape == labelled.shape
    changed = np.abs(plain - labelled).sum(-1) > 0
    assert changed.any()
    for k in range(4):  # each tile: label pixels in its top-left corner, the rest untouched
        y, x = GAP, GAP + k * (64 + GAP)
        assert changed[y:y + 32, x:x + 32].any()
        assert not changed[y + 40:y + 64, x + 40:x + 64].any()


def test_different_frame_numbers_give_different_labels():
    frames = np.zeros((12, 48, 48, 3), np.uint8)
    sheet = np.asarray(contact_sheet(frames, scale=1, cols=12))
    corners = [tile(Image.fromarray(sheet), k, 12, 48, 48)[:20, :30] for k in (1, 7, 11)]
    assert not np.array_equal(corners[0], corners[1]) and not np.array_equal(corners[1], corners[2])


def test_max_frames_grows_the_step_and_spans_the_clip():
    assert sheet_indices(100, every=1, max_frames=10) == list(range(0, 100, 10))
    assert sheet_indices(100, every=3, max_frames=10) == list(range(0, 100, 12))
    assert sheet_indices(5, every=2, max_frames=64) == [0, 2, 4]
    assert len(sheet_indices(1000, every=1, max_frames=64)) <= 64
    sheet = contact_sheet(numbered_clip(100), max_frames=10, cols=5, scale=1)
    assert sheet.size == (5 * 20 + 6 * GAP, 2 * 16 + 3 * GAP)


def test_default_scale_enlarges_small_frames_and_gray_works():
    sheet = contact_sheet(numbered_clip(3, H=8, W=8, C=1))  # 8x8 -> 16x at least 128 wide
    assert sheet.size == (3 * 128 + 4 * GAP, 128 + 2 * GAP)


def test_title_adds_a_strip_on_top():
    frames = numbered_clip(2)
    plain = contact_sheet(frames, scale=1)
    titled = contact_sheet(frames, scale=1, title="moving mnist, seed 0")
    assert titled.size[0] == plain.size[0] and titled.size[1] > plain.size[1]


def test_writes_png_atomically(tmp_path):
    path = tmp_path / "sheet.png"
    sheet = contact_sheet(Video(numbered_clip(5), fps=8), path, every=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == sheet.size
    assert os.listdir(tmp_path) == ["sheet.png"]


@pytest.mark.parametrize("kwargs, match", [
    ({"every": 0}, "every"), ({"cols": 0}, "cols"), ({"max_frames": 0}, "max_frames"), ({"scale": -1}, "scale"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ArvidError, match=match):
        contact_sheet(numbered_clip(3), **kwargs)


def test_bad_paths(tmp_path):
    with pytest.raises(ArvidError, match=r"sheet\.jpg.*\.png"):
        contact_sheet(numbered_clip(2), tmp_path / "sheet.jpg")
    with pytest.raises(ArvidError, match="missing.*does not exist"):
        contact_sheet(numbered_clip(2), tmp_path / "missing" / "sheet.png")
    assert os.listdir(tmp_path) == []
