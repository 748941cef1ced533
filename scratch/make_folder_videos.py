"""A folder of short real-looking videos to train arvid on when no footage is at hand (not part of arvid).

Camera moves over the two photographs scikit-learn ships (`sklearn.datasets.load_sample_images()`: a Chinese
temple and a flower, 640x427 each): pans at several speeds and directions, zooms in and out, a rotation and a
hand-held shake, each a crop rendered by one affine warp per frame. Then clips of arvid's `shapes` dataset
(bouncing coloured shapes) and one drifting procedural texture. Subfolders are the classes: pan/, zoom/, turn/,
shapes/, texture/. Written as H.264 mp4 with PyAV, 192x144 at 24 frames/s (shapes and texture 144x144).

    python scratch/make_folder_videos.py --out runs/own-videos
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

W, H, FPS = 192, 144, 24


def photos() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return {Path(name).stem: image for name, image in zip(data.filenames, data.images)}  # uint8 (427, 640, 3)


def camera(image: np.ndarray, frames: int, centre, zoom, angle, size=(W, H)) -> np.ndarray:
    """A virtual camera over `image`: per frame t, its centre (x, y) in pixels, its zoom (output pixels per image
    pixel) and its rotation in degrees, each a function of s = t / (frames - 1) in [0, 1] -> uint8 (T, h, w, 3)."""
    w, h = size
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        s = t / max(1, frames - 1)
        (cx, cy), z, a = centre(s), zoom(s), angle(s)
        m = cv2.getRotationMatrix2D((cx, cy), a, z)  # image -> output, about the camera's centre
        m[:, 2] += (w / 2 - cx, h / 2 - cy)
        out[t] = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_AREA if z < 1 else cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
    return out


def line(a, b):
    return lambda s: (a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s)


def const(v):
    return lambda s: v


def shake(seed: int, frames: int, start, step: float):
    """A hand-held camera: a smoothed random walk from `start`, about `step` pixels a frame."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, step, (frames, 2)), axis=0)
    walk = cv2.GaussianBlur(walk.astype(np.float32)[:, None, :], (1, 9), 0)[:, 0, :]
    path = np.asarray(start, np.float32) + walk
    return lambda s: tuple(path[round(s * (frames - 1))])


def photo_clips(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    china, flower = images["china"], images["flower"]
    return {  # name -> frames; centres in image pixels (640x427), zoom 0.5 shows a 384x288 window
        "pan/china_right_slow.mp4": camera(china, 160, line((200, 210), (440, 210)), const(0.5), const(0)),
        "pan/china_left_fast.mp4": camera(china, 64, line((500, 180), (140, 240)), const(0.6), const(0)),
        "pan/flower_down.mp4": camera(flower, 128, line((320, 120), (320, 300)), const(0.7), const(0)),
        "pan/flower_diagonal.mp4": camera(flower, 96, line((180, 140), (460, 290)), const(0.5), const(0)),
        "pan/china_handheld.mp4": camera(china, 192, shake(1, 192, (330, 200), 1.5), const(0.8), const(0)),
        "zoom/china_in.mp4": camera(china, 128, const((300, 190)), lambda s: 0.35 * 3.0 ** s, const(0)),
        "zoom/flower_out.mp4": camera(flower, 96, const((330, 230)), lambda s: 1.2 / 3.0 ** s, const(0)),
        "turn/flower_rotate.mp4": camera(flower, 160, const((320, 213)), const(0.55), lambda s: 90 * s),
        "turn/china_rotate_zoom.mp4": camera(china, 128, const((330, 200)), lambda s: 0.45 + 0.3 * s,
                                             lambda s: -60 * s),
    }


def shapes_clips(count: int = 2, frames: int = 160, size: int = 144) -> dict[str, np.ndarray]:
    from arvid.data import make_dataset

    data = make_dataset("shapes", frames=frames, size=size, seed=7, num_shapes=3)
    return {f"shapes/bouncing_{i}.mp4": data.clip(i).video for i in range(count)}


def drifting_texture(frames: int = 128, size: int = 144, seed: int = 3) -> np.ndarray:
    """Smooth coloured noise that drifts and slowly turns, like clouds or water seen from above."""
    rng = np.random.default_rng(seed)
    big = 4 * size
    field = cv2.GaussianBlur(rng.random((big, big, 3)).astype(np.float32), (0, 0), 9)
    field = (field - field.min()) / (field.max() - field.min())
    field = (255 * field ** 1.5).astype(np.uint8)
    centre = line((1.5 * size, 1.5 * size), (2.5 * size, 2.0 * size))
    return camera(field, frames, centre, const(1.0), lambda s: 25 * s, size=(size, size))


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/own-videos"))
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: give a new folder")
    clips = {**photo_clips(photos()), **shapes_clips(), "texture/drifting.mp4": drifting_texture()}
    for name, frames in clips.items():
        write_mp4(args.out / name, frames)
        print(f"{name}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}")


if __name__ == "__main__":
    main()
