"""Video files: every format round trip, channels, atomic writes, and the resize/crop transforms."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

import arvid.video.io as vio
from arvid.errors import ArvidError
from arvid.video import Video, center_crop, fit_video, read_video, resize_video, write_video


def natural_clip(T: int = 12, H: int = 64, W: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth gradients, two soft-edged moving discs and mild noise: (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        image = np.stack([60 + 1.5 * x, 50 + 2 * y, 120 + 60 * np.sin((x + y + 4 * t) / 20)], -1)
        for cx, cy, r, colour in [(10 + 2.5 * t, 30, 10, (200, 80, 60)), (70 - 1.5 * t, 20 + t, 8, (60, 170, 100))]:
            alpha = np.clip((r - np.hypot(x - cx, y - cy)) / 2 + 0.5, 0, 1)[..., None]  # 2-pixel soft edge
            image = image * (1 - alpha) + np.array(colour) * alpha
        frames[t] = np.clip(np.round(image + rng.normal(0, 2, image.shape)), 0, 255)
    return frames


def few_colour_clip(T: int = 10, H: int = 24, W: int = 40) -> np.ndarray:
    """A moving block over flat colours (6 colours), with one repeated frame: (T, H, W, 3) uint8."""
    colours = np.array([[12, 40, 200], [250, 250, 250], [0, 0, 0], [200, 30, 30], [30, 200, 30], [90, 90, 90]], np.uint8)
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        frames[t] = colours[0]
        frames[t, 4:12, 3 * t:3 * t + 8] = colours[1]
        frames[t, 16:, :6] = colours[2 + t % 4]
    if T > 5:
        frames[5] = frames[4]
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def no_temporaries(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.startswith(".")]


# --------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["clip.npy", "frames", "frames/"])
@pytest.mark.parametrize("channels", [3, 1])
def test_lossless_round_trip(tmp_path, name, channels):
    frames = natural_clip(T=5, H=17, W=23)  # odd sizes: lossless formats take any size
    if channels == 1:
        frames = frames[..., :1]
    written = write_video(str(tmp_path / name), frames, fps=12.0)
    video = read_video(written)
    assert video.frames.shape == frames.shape and video.frames.dtype == np.uint8
    np.testing.assert_array_equal(video.frames, frames)
    assert video.fps == (8.0 if name.endswith(".npy") else 12.0)  # .npy stores no frame rate
    assert no_temporaries(tmp_path)


def test_png_folder_layout_and_gray_mode(tmp_path):
    write_video(tmp_path / "f", natural_clip(T=3)[..., :1])
    assert sorted(os.listdir(tmp_path / "f")) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    with Image.open(tmp_path / "f" / "frame_00000.png") as im:
        assert im.mode == "L"


def test_h264_round_trip_psnr_and_fps(tmp_path):
    frames = natural_clip()
    video = read_video(write_video(tmp_path / "clip.mp4", frames, fps=12))
    assert video.frames.shape == frames.shape
    assert video.fps == 12.0
    assert psnr(video.frames, frames) > 35.0
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_h264_crf_trades_size_for_quality(tmp_path):
    frames = natural_clip()
    hi = read_video(write_video(tmp_path / "hi.mp4", frames, crf=10)).frames
    lo = read_video(write_video(tmp_path / "lo.mp4", frames, crf=35)).frames
    assert psnr(hi, frames) > psnr(lo, frames) + 3
    assert (tmp_path / "hi.mp4").stat().st_size > (tmp_path / "lo.mp4").stat().st_size


def test_webm_round_trip(tmp_path):
    frames = natural_clip()
    video = read_video(write_video(tmp_path / "clip.webm", frames, fps=10))
    assert video.frames.shape == frames.shape and video.fps == 10.0
    assert psnr(video.frames, frames) > 32.0  # VP9 at crf 32: about 35 dB on this clip


def test_gif_exact_for_few_colours(tmp_path):
    frames = few_colour_clip()
    video = read_video(write_video(tmp_path / "clip.gif", frames, fps=10))
    np.testing.assert_array_equal(video.frames, frames)  # including the repeated frame 5
    assert video.fps == 10.0


@pytest.mark.parametrize("fps", [8.0, 30.0, 120.0])
def test_gif_frame_rate_is_whole_centiseconds(tmp_path, fps):
    video = read_video(write_video(tmp_path / "clip.gif", few_colour_clip(T=4), fps=fps))
    assert video.fps == pytest.approx(100 / max(2, round(100 / fps)))


def test_gif_natural_clip_is_quantised_within_bound(tmp_path):
    frames = natural_clip(T=4)
    video = read_video(write_video(tmp_path / "clip.gif", frames))
    assert video.frames.shape == frames.shape
    assert psnr(video.frames, frames) > 30.0  # 256-colour median cut per frame: about 37 dB


def test_write_accepts_video_and_uses_its_fps(tmp_path):
    video = Video(few_colour_clip(T=3), fps=5.0)
    assert read_video(write_video(tmp_path / "v.gif", video)).fps == 5.0
    assert read_video(write_video(tmp_path / "w.gif", video, fps=10)).fps == 10.0


@pytest.mark.parametrize("suffix, codec", [(".avi", "mpeg4"), (".mkv", "libx264"), (".mov", "libx264")])
def test_reads_other_containers(tmp_path, suffix, codec):
    frames = natural_clip(T=6)
    path = tmp_path / f"clip{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25), options={"qscale": "2"} if codec == "mpeg4" else {})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = read_video(path)
    assert video.frames.shape == frames.shape and video.fps == 25.0
    assert psnr(video.frames, frames) > 28.0


# --------------------------------------------------------------------------------- channels


def test_gray_stays_gray_in_mp4_and_is_expanded_for_webm(tmp_path):
    gray = natural_clip()[..., :1]
    path = write_video(tmp_path / "gray.mp4", gray)  # H.264 4:0:0: luma only, any size
    back = read_video(path)
    assert back.channels == 1 and psnr(back.frames, gray) > 35.0
    odd = read_video(write_video(tmp_path / "odd.mp4", gray[:, :15, :17]))
    assert odd.frames.shape == (gray.shape[0], 15, 17, 1)
    rgb = read_video(path, channels=3)
    assert rgb.channels == 3 and np.abs(rgb.frames.astype(int) - rgb.frames[..., :1]).max() <= 2  # R = G = B
    path = write_video(tmp_path / "gray.webm", gray)  # VP9 has no gray coding
    assert read_video(path, channels=1).channels == 1 and read_video(path).channels in (1, 3)
    # a colour clip stays colour: its chroma is not neutral
    colour = natural_clip()
    assert read_video(write_video(tmp_path / "colour.mp4", colour)).channels == 3


def test_channels_argument_converts(tmp_path):
    frames = natural_clip(T=2)
    write_video(tmp_path / "f", frames)
    gray = read_video(tmp_path / "f", channels=1).frames
    expected = np.stack([np.asarray(Image.fromarray(f).convert("L")) for f in frames])[..., None]
    np.testing.assert_array_equal(gray, expected)  # same luma as Pillow
    write_video(tmp_path / "g", frames[..., :1])
    np.testing.assert_array_equal(read_video(tmp_path / "g", channels=3).frames, np.repeat(frames[..., :1], 3, axis=3))
    with pytest.raises(ArvidError, match="channels"):
        read_video(tmp_path / "g", channels=4)


@pytest.mark.parametrize("mode, channels", [("RGBA", 3), ("LA", 1), ("P", 3)])
def test_alpha_and_palette_images(tmp_path, mode, channels):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (2, 8, 10, 4), dtype=np.uint8)
    for i, frame in enumerate(rgba):
        image = Image.fromarray(frame, "RGBA")
        image = image.convert(mode) if mode != "P" else image.convert("RGB").quantize(16)
        image.save(tmp_path / f"{i}.png")
    video = read_video(tmp_path)
    assert video.channels == channels and video.frames.shape[:3] == (2, 8, 10)
    if mode == "RGBA":  # alpha dropped, colour untouched
        np.testing.assert_array_equal(video.frames, rgba[..., :3])


def test_folder_order_is_natural_and_ignores_other_files(tmp_path):
    for i in [10, 2, 1]:
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"f{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    video = read_video(tmp_path)
    assert video.frames[:, 0, 0, 0].tolist() == [1, 2, 10]


def test_folder_mixing_gray_and_colour_reads_as_colour(tmp_path):
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "0.png")
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(tmp_path / "1.jpg", quality=100)
    video = read_video(tmp_path)
    assert video.channels == 3 and video.frames[0].max() == 7


def test_single_image_is_one_frame(tmp_path):
    Image.fromarray(np.full((5, 6, 3), 100, np.uint8)).save(tmp_path / "x.png")
    assert read_video(tmp_path / "x.png").frames.shape == (1, 5, 6, 3)


# --------------------------------------------------------------------------------- atomic writes


def _fail_after(monkeypatch, target, name, n, exc):
    real, calls = getattr(target, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif"])
def test_encoder_failure_leaves_no_file(tmp_path, monkeypatch, name):
    _fail_after(monkeypatch, vio, "_av_frame", 3, RuntimeError("encoder died"))
    with pytest.raises(RuntimeError, match="encoder died"):
        write_video(tmp_path / name, natural_clip(T=8))
    assert os.listdir(tmp_path) == []


def test_failure_keeps_existing_file_intact(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", natural_clip(T=4))
    before = path.read_bytes()
    _fail_after(monkeypatch, vio, "_av_frame", 2, OSError(28, "No space left on device"))
    with pytest.raises(ArvidError, match="clip.mp4.*No space left"):
        write_video(path, natural_clip(T=8, seed=1))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["clip.mp4"]


def test_png_folder_failure_leaves_nothing_and_keeps_old_frames(tmp_path, monkeypatch):
    write_video(tmp_path / "frames", few_colour_clip(T=2))
    before = sorted(os.listdir(tmp_path / "frames"))
    _fail_after(monkeypatch, vio.Image, "fromarray", 3, RuntimeError("disk gone"))
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "frames", few_colour_clip(T=6))
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "new_frames", few_colour_clip(T=6))
    assert sorted(os.listdir(tmp_path)) == ["frames"]
    assert sorted(os.listdir(tmp_path / "frames")) == before


def test_npy_failure_leaves_no_file(tmp_path, monkeypatch):
    import arvid.video.io as vio

    real = vio._npy_header
    monkeypatch.setattr(vio, "_npy_header", lambda shape: real(shape) if shape[0] == 0 else (_ for _ in ()).throw(
        OSError("EIO")))  # the disk fails when the file is finished
    with pytest.raises(ArvidError, match="clip.npy"):
        write_video(tmp_path / "clip.npy", few_colour_clip(T=2))
    assert os.listdir(tmp_path) == []


def test_png_folder_refuses_to_replace_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ArvidError, match="thesis.tex"):
        write_video(tmp_path / "mine", few_colour_clip(T=2))
    assert os.listdir(tmp_path / "mine") == ["thesis.tex"]


@pytest.mark.parametrize("frames, match", [
    (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((2, 8, 8, 4), np.uint8), r"C 1 or 3"),
    (np.zeros((8, 8), np.uint8), r"\(T, H, W\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), "nothing to write"),
    ([[1, 2]], "uint8"),
])
def test_write_refuses_bad_frames(tmp_path, frames, match):
    with pytest.raises(ArvidError, match=match):
        write_video(tmp_path / "x.mp4", frames)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [({"fps": 0}, "fps"), ({"fps": "fast"}, "fps"), ({"crf": 99}, "crf")])
def test_write_refuses_bad_settings(tmp_path, kwargs, match):
    with pytest.raises(ArvidError, match=match):
        write_video(tmp_path / "x.mp4", few_colour_clip(T=2), **kwargs)


def test_write_refuses_unknown_suffix_and_odd_h264(tmp_path):
    with pytest.raises(ArvidError, match=r"x\.avi.*\.mp4, \.webm"):
        write_video(tmp_path / "x.avi", few_colour_clip(T=2))
    with pytest.raises(ArvidError, match=r"odd\.mp4.*even.*23x24"):
        write_video(tmp_path / "odd.mp4", natural_clip(T=2, H=24, W=23))
    assert os.listdir(tmp_path) == []
    write_video(tmp_path / "odd.webm", natural_clip(T=2, H=24, W=23))  # VP9 takes odd sizes


# --------------------------------------------------------------------------------- transforms


def test_resize_and_center_crop():
    frames = natural_clip(T=3)  # (3, 64, 96, 3)
    small = resize_video(frames, (32, 48))
    assert small.shape == (3, 32, 48, 3) and small.dtype == np.uint8
    flat = np.full((2, 30, 40, 1), 77, np.uint8)
    np.testing.assert_array_equal(resize_video(flat, (7, 9)), np.full((2, 7, 9, 1), 77, np.uint8))
    crop = center_crop(frames, (32, 32))
    np.testing.assert_array_equal(crop, frames[:, 16:48, 32:64])
    with pytest.raises(ArvidError, match="larger"):
        center_crop(frames, (65, 10))


def test_fit_crop_keeps_aspect_and_centre():
    frames = np.zeros((1, 40, 80, 3), np.uint8)  # left eighth red, the rest blue
    frames[:, :, :10] = (255, 0, 0)
    frames[:, :, 10:] = (0, 0, 255)
    out = fit_video(frames, (32, 32))  # -> resize to 32x64, cut columns 16..48: all blue
    assert out.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(out, center_crop(resize_video(frames, (32, 64)), (32, 32)))
    assert (out[..., 2] == 255).all()


def test_fit_pad_and_stretch():
    frames = np.full((2, 40, 80, 1), 200, np.uint8)
    padded = fit_video(frames, (32, 32), mode="pad")  # -> 16x32 image, 8 black rows above and below
    assert padded.shape == (2, 32, 32, 1)
    assert (padded[:, :8] == 0).all() and (padded[:, 24:] == 0).all() and (padded[:, 8:24] == 200).all()
    assert fit_video(frames, (32, 32), mode="stretch").shape == (2, 32, 32, 1)
    with pytest.raises(ArvidError, match="fit mode"):
        fit_video(frames, (32, 32), mode="zoom")
    with pytest.raises(ArvidError, match="positive"):
        fit_video(frames, (0, 32))


def test_a_writer_that_cannot_rename_into_place_leaves_nothing_behind(tmp_path):
    from arvid.errors import ArvidError
    from arvid.video.io import VideoWriter

    frames = np.zeros((2, 8, 8, 1), np.uint8)
    out = VideoWriter(tmp_path / "c.npy", fps=8)
    out.write(frames)
    (tmp_path / "c.npy").mkdir()  # the target became a folder while the video was written
    with pytest.raises(ArvidError, match="became a folder"):
        out.close()
    folder = VideoWriter(tmp_path / "frames", fps=8)
    folder.write(frames)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "notes.txt").write_text("mine")  # a user's file appeared in the target folder
    with pytest.raises(ArvidError, match="notes.txt"):
        folder.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy", "frames"]
    assert (tmp_path / "frames" / "notes.txt").read_text() == "mine"


def test_a_size_the_format_refuses_creates_nothing(tmp_path):
    from arvid.errors import ArvidError
    from arvid.video.io import VideoWriter

    out = VideoWriter(tmp_path / "odd.mp4", fps=8)  # used without a with-block
    with pytest.raises(ArvidError, match="even width and height"):
        out.write(np.zeros((7, 9, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    assert out.shape is None
