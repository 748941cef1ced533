"""Decoder-side motion extrapolation (arvid/tokenizer/motion.py): what the context tokenizer predicts from the last
two decoded frames, checked on shapes whose motion is known exactly."""

import torch

from arvid.tokenizer.motion import extrapolate, velocities


def canvas(*objects, size: int = 32) -> torch.Tensor:
    """A black frame (1, 1, size, size) in [-1, 1] with textured boxes (y, x, h, w, value) drawn by maximum."""
    f = -torch.ones(1, 1, size, size)
    for y, x, h, w, value in objects:
        box = torch.full((h, w), value)
        box[1, 1] = 0.0  # texture, so a box matches itself at one displacement only
        f[0, 0, y : y + h, x : x + w] = torch.maximum(f[0, 0, y : y + h, x : x + w], box)
    return f


def test_a_moving_box_is_carried_on_at_its_velocity_for_every_step():
    older, last = canvas((10, 16, 5, 4, 1.0)), canvas((11, 14, 5, 4, 1.0))  # velocity (1, -2) px per frame
    pred, holes = extrapolate(torch.stack([older, last], dim=2), steps=4, radius=3)
    assert pred.shape == (1, 1, 4, 32, 32) and holes.shape == (1, 1, 4, 32, 32)
    for n in range(1, 5):
        assert torch.equal(pred[:, :, n - 1], canvas((11 + n, 14 - 2 * n, 5, 4, 1.0)))  # pixels copied, not blurred
    assert velocities(torch.stack([older, last], dim=2), radius=3)[0, 13, 15].tolist() == [1, -2]
    assert holes[:, :, 0].sum() > 0  # where the box was, nothing landed


def test_still_frames_predict_themselves_and_flag_nothing():
    frame = canvas((4, 4, 6, 6, 0.5), (20, 18, 5, 5, 1.0))
    pred, holes = extrapolate(torch.stack([frame, frame], dim=2), steps=2, radius=2)
    assert torch.equal(pred, frame[:, :, None].expand_as(pred)) and not holes.any()


def test_two_boxes_moving_apart_each_keep_their_own_velocity_and_the_background_stays_black():
    older = canvas((4, 10, 5, 5, 1.0), (20, 10, 5, 5, 0.6))
    last = canvas((4, 12, 5, 5, 1.0), (20, 9, 5, 5, 0.6))  # one moves right by 2, the other left by 1
    pred, holes = extrapolate(torch.stack([older, last], dim=2), steps=3, radius=2)
    for n in range(1, 4):
        assert torch.equal(pred[:, :, n - 1], canvas((4, 12 + 2 * n, 5, 5, 1.0), (20, 9 - n, 5, 5, 0.6)))


def test_motion_past_the_search_radius_is_not_invented():
    older, last = canvas((10, 4, 5, 4, 1.0)), canvas((10, 12, 5, 4, 1.0))  # 8 px per frame, radius 2
    v = velocities(torch.stack([older, last], dim=2), radius=2)
    assert v.abs().max() <= 2


def test_gradients_reach_the_last_frame_through_the_copied_pixels_only():
    older, last = canvas((10, 16, 5, 4, 1.0)), canvas((11, 14, 5, 4, 1.0))
    history = torch.stack([older, last], dim=2).requires_grad_(True)
    pred, _ = extrapolate(history, steps=2, radius=3)
    pred.sum().backward()
    assert history.grad[:, :, 1].abs().sum() > 0
    assert history.grad[:, :, 0].abs().sum() == 0  # the older frame only chose the motion
