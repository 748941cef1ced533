"""The own-videos guide, end to end at toy size, through the command line: a folder of mp4 files with different
motion and texture -> `arvid data folder` -> `arvid train tokenizer` and `arvid train generator` (a recipe file
sizing them to a toy) -> `arvid pack` -> `arvid generate` and `arvid extend` -> `arvid eval generation` on the
folder. Every file the run decodes is recorded, with the split it was read for, so the test can hold training to
its word: the held-out files are never read for training, and eval reads only them."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import re
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from arvid.kernels import use_backend
from cli_cases import PROGRESS, no_temporaries

from arvid.cli.main import main
from arvid.data import make_dataset
from arvid.data.folder import VideoFolder, held_out_files
from arvid.video import read_video

pytest.importorskip("cv2")

TOY_RECIPE = """\
[tokenizer]
preset = "tiny"
frames = 5
size = 16
batch_size = 2
steps = 6
warmup = 1
eval_every = 3
eval_clips = 2

[generator]
preset = "tiny"
window = 2
train_frames = 5
clip_frames = 9
size = 16
clips = 8
eval_clips = 2
batch_size = 2
steps = 6
warmup = 1
eval_every = 3
eval_windows = 2
"""
EVAL_FAST = ["--clips", "2", "--context", "3", "--predict", "2", "--frames", "4", "--batch", "2", "--sweep", "",
             "--guidance-sweep", "", "--long-clips", "0", "--tokenizer-clips", "1"]


# ------------------------------------------------------------------------------------------- the folder


def texture(seed: int, size: int = 96) -> np.ndarray:
    """Smooth random colour texture, uint8 (size, size, 3)."""
    import cv2

    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    return (255 * (smooth - smooth.min()) / (smooth.max() - smooth.min())).astype(np.uint8)


def pan(image: np.ndarray, T: int, dy: int, dx: int, H: int = 32, W: int = 48) -> np.ndarray:
    """A (H, W) window moving (dy, dx) pixels a frame over `image`: uint8 (T, H, W, 3)."""
    return np.stack([image[t * dy: t * dy + H, t * dx: t * dx + W] for t in range(T)])


def turning_stripes(T: int, H: int = 32, W: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = [np.sin((xx * np.cos(a) + yy * np.sin(a)) / 3) for a in np.linspace(0, np.pi / 2, T)]
    gray = (127.5 + 127.5 * np.stack(frames)).astype(np.uint8)
    return np.stack([gray, 255 - gray, gray // 2], axis=-1)


def write_mp4(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def shapes(i: int, T: int) -> np.ndarray:
    return make_dataset("shapes", frames=T, size=32, seed=5).clip(i).video


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six short mp4 clips in three class folders (pans over two textures, turning stripes, bouncing shapes) and a
    text file that is no video."""
    root = tmp_path_factory.mktemp("videos")
    clips = {
        "pan/right.mp4": pan(texture(0), 24, 0, 2),
        "pan/down.mp4": pan(texture(1), 28, 2, 0),
        "pan/diagonal.mp4": pan(texture(2), 20, 2, 2),
        "turn/stripes.mp4": turning_stripes(24),
        "shapes/a.mp4": shapes(0, 24),
        "shapes/b.mp4": shapes(1, 30),
    }
    for name, frames in clips.items():
        write_mp4(root / name, frames)
    (root / "notes.txt").write_text("where these clips came from\n")
    return root


# ------------------------------------------------------------------------------------------- the run


class Reads:
    """Every decode of a file under the folder while the run goes: (phase, split, path relative to the folder).
    The split is that of the folder dataset reading it, None when something else opened the file."""

    def __init__(self, root: Path):
        self.root, self.phase, self.seen = root, None, []
        self._split = contextvars.ContextVar("split", default=None)

    def install(self, monkeypatch) -> None:
        read_fitted, opener = VideoFolder._read_fitted, av.open

        def reading(dataset, file_index):
            token = self._split.set(dataset.split)
            try:
                return read_fitted(dataset, file_index)
            finally:
                self._split.reset(token)

        def opening(file, *args, **kwargs):
            path = Path(str(file)).resolve()
            if path.is_relative_to(self.root.resolve()):
                self.seen.append((self.phase, self._split.get(), path.relative_to(self.root.resolve()).as_posix()))
            return opener(file, *args, **kwargs)

        monkeypatch.setattr(VideoFolder, "_read_fitted", reading)  # before any dataset binds it
        monkeypatch.setattr(av, "open", opening)

    @contextlib.contextmanager
    def during(self, phase: str):
        self.phase = phase
        try:
            yield
        finally:
            self.phase = None

    def of(self, phase: str) -> list[tuple[str | None, str]]:
        """The videos read in `phase` (the scan's probe of a file that is no video is left out)."""
        return [(split, name) for p, split, name in self.seen if p == phase and name.endswith(".mp4")]


@pytest.fixture(scope="module")
def guide(videos, tmp_path_factory):
    """The guide's commands, in order, at toy size; each command's exit code and stderr, and the files read."""
    mp = pytest.MonkeyPatch()
    reads = Reads(videos)
    reads.install(mp)
    work = tmp_path_factory.mktemp("work")
    (work / "toy.toml").write_text(TOY_RECIPE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {"work": work, "reads": reads}
    try:
        with use_backend("pytorch"):
            steps = {
                "data": ["data", "folder", "--path", videos, "--out", work / "samples", "--frames", 9, "--size", 16],
                "tokenizer": ["train", "tokenizer", "--out", work / "tok", "--recipe", work / "toy.toml",
                              "--dataset", "folder", "--data-path", videos],
                "generator": ["train", "generator", "--out", work / "gen", "--tokenizer", work / "tok",
                              "--recipe", work / "toy.toml", "--dataset", "folder", "--data-path", videos],
                "pack": ["pack", "--tokenizer", work / "tok", "--generator", work / "gen", "--out", work / "model"],
                "generate": ["generate", "--model", work / "model", "--frames", 9, "--seed", 1,
                             "--out", work / "clip.mp4", "--sheet", work / "sheet.png"],
                "extend": ["extend", videos / "pan" / "right.mp4", "--model", work / "model", "--frames", 4,
                           "--out", work / "longer.mp4"],
                "eval": ["eval", "generation", "--model", work / "model", "--dataset", "folder", "--data-path",
                         videos, "--out", work / "report", *EVAL_FAST],
            }
            for name, argv in steps.items():
                with reads.during(name), warnings.catch_warnings(record=True) as notices:
                    warnings.simplefilter("always")
                    out[name] = cli(*argv)
                out[f"{name} notices"] = [str(n.message) for n in notices]
                assert out[name][0] == 0, (name, out[name][1])
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    return out


def cli(*argv) -> tuple[int, list[str], str]:
    """`arvid ARGV` in this process -> (exit code, stderr's lines without progress bars, stdout)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    lines = [line for line in re.split(r"[\r\n]", err.getvalue())
             if line.strip() and not line.startswith("generating") and not PROGRESS.match(line)]
    return code, lines, out.getvalue()


def held_out(videos: Path) -> list[str]:
    names = sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*.mp4"))
    return held_out_files(names)


# ------------------------------------------------------------------------------------------- the tests


def test_looking_at_the_folder_names_the_held_out_file_and_skips_the_text(guide, videos):
    held = held_out(videos)
    assert len(held) == 1  # six files: about a tenth, at least one
    _, lines, _ = guide["data"]
    notice = next(line for line in lines if "held out for evaluation" in line)
    assert f"1 of 6 files: {held[0]}" in notice and "notes.txt" in notice
    labels = json.loads((guide["work"] / "samples" / "labels.json").read_text())
    assert len(labels) == 8 and {name for names in labels.values() for name in names} <= {"pan", "turn", "shapes"}
    assert (guide["work"] / "samples" / "sheet.png").stat().st_size > 0
    assert all(split == "train" for split, _ in guide["reads"].of("data")), guide["reads"].seen  # training clips
    assert held[0] not in {name for _, name in guide["reads"].of("data")}


@pytest.mark.parametrize("phase", ["tokenizer", "generator"])
def test_training_never_reads_a_held_out_file(guide, videos, phase):
    held = set(held_out(videos))
    reads = guide["reads"].of(phase)
    trained_on = {name for split, name in reads if split == "train"}
    assert len(trained_on) >= 3  # the check is live: training did decode the folder's other files
    assert not trained_on & held
    # a held-out file is decoded only as the run's evaluation clips, and nothing else opens one
    assert {name for split, name in reads if name in held} <= held
    assert all(split == "eval" for split, name in reads if name in held), reads
    assert all(name in held for split, name in reads if split == "eval"), reads
    assert all(split is not None for split, _ in reads), reads  # nothing decodes the folder outside the dataset
    assert all(split is None for _, split, name in guide["reads"].seen if name == "notes.txt")  # probed, never read


def test_the_recipe_file_sizes_both_runs_and_each_leaves_its_log_and_pictures(guide):
    work = guide["work"]
    for run_dir, kind in ((work / "tok", "tokenizer"), (work / "gen", "generator")):
        state = json.loads((run_dir / "trainer_state.json").read_text())
        options = state["train_config"]["options"]
        assert options["recipe"] == str(work / "toy.toml") and options["preset"] == "tiny"
        assert state["train_config"]["steps"] == 6 and options["size"] == 16
        log = (run_dir / "log.csv").read_text().splitlines()
        assert log[0].startswith("step") and len(log) >= 3, (kind, log)
        assert (run_dir / "preview.png").stat().st_size > 0
        no_temporaries(run_dir)
    tok = json.loads((work / "tok" / "config.json").read_text())["config"]
    assert tok["channels"] == 3 and tok["notes"]["dataset"] == "folder"  # colour, like the videos
    gen = json.loads((work / "gen" / "config.json").read_text())["config"]
    assert gen["num_classes"] == 3 and gen["labels_per_clip"] == 1  # pan, shapes, turn


def test_the_packed_model_generates_and_extends_at_its_training_size(guide, videos):
    work = guide["work"]
    clip = read_video(work / "clip.mp4")
    assert clip.frames.shape == (9, 16, 16, 3)
    assert (work / "sheet.png").stat().st_size > 0
    source = read_video(videos / "pan" / "right.mp4")
    longer = read_video(work / "longer.mp4")
    assert longer.frames.shape == (len(source.frames) + 4, 16, 16, 3)
    _, lines, _ = guide["extend"]
    assert "arvid: resized 48x32 to 16x16 (short side scaled, then centre-cropped) to match the model" in lines
    assert not any("far from" in line for line in lines + guide["extend notices"])  # a clip like the training ones


def test_eval_generation_measures_the_held_out_files_and_only_them(guide, videos):
    held = held_out(videos)
    report = guide["work"] / "report"
    figures = json.loads((report / "figures.json").read_text())
    assert figures["data"]["dataset"] == "folder" and figures["data"]["held_out"]
    assert figures["data"]["notice"].startswith(f"held out for evaluation: 1 of 6 files: {held[0]}")
    cont = figures["figures"]["continuation"]
    assert {"greedy", "copy last"} <= set(cont) and all(np.isfinite(r["mean_psnr"]) for r in cont.values())
    cons = figures["figures"]["consistency"]
    assert {"real", "generated", "no-context ablation"} <= set(cons)
    folder_reads = {name for split, name in guide["reads"].of("eval")}
    assert folder_reads == set(held)
    assert "Held out for evaluation: 1 of 6 files" in (report / "report.md").read_text()
