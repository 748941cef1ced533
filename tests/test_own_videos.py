"""Your own videos: files recognised by content (any container PyAV decodes, whatever the name), and the folder
dataset's held-out files (chosen by path, never read by the training split)."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

import arvid.video as video_pkg
from arvid.cli.main import main
from arvid.data import make_dataset
from arvid.data.folder import HOLD_OUT, MIN_FILES_TO_HOLD_OUT, file_share, held_out_files
from arvid.errors import ArvidError
from arvid.video import read_video, write_video
from arvid.video.io import file_kind, stream_video


def moving_square(T: int = 12, H: int = 48, W: int = 64) -> np.ndarray:
    """A white square moving right on a gradient, frame number in the red channel: uint8 (T, H, W, 3)."""
    frames = np.zeros((T, H, W, 3), np.uint8)
    frames[..., 1] = np.linspace(0, 200, W, dtype=np.uint8)
    for t in range(T):
        frames[t, ..., 0] = 10 * t
        frames[t, 10:26, 2 * t:2 * t + 16] = 255
    return frames


def encode(path, container: str, codec: str, frames: np.ndarray, fps: int = 25):
    """Write `frames` with PyAV into `path` as `container`, whatever the path's suffix; the path."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def psnr(a, b) -> float:
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


# ------------------------------------------------------------------------------------- inputs by content


@pytest.mark.parametrize("name, container, codec, kind", [
    ("clip.mpg", "mpeg", "mpeg1video", "mpeg"),  # MPEG-1 in a program stream
    ("clip.ts", "mpegts", "mpeg2video", "mpegts"),  # MPEG-2 in a transport stream
    ("clip.flv", "flv", "flv", "flv"),
    ("clip.m1v", "mpeg1video", "mpeg1video", "mpegvideo"),  # an MPEG-1 video stream, no container
    ("renamed.mp4", "mpeg", "mpeg1video", "mpeg"),  # an .mpg called .mp4
    ("renamed.dat", "mp4", "mpeg4", "mp4"),  # an mp4 called .dat
    ("no_suffix", "mpegts", "mpeg2video", "mpegts"),
])
def test_videos_are_read_by_content_whatever_their_name(tmp_path, name, container, codec, kind):
    frames = moving_square()
    path = encode(tmp_path / name, container, codec, frames)
    assert file_kind(path) == kind
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and clip.fps == 25.0
    assert psnr(clip.frames, frames) > 25
    streamed = stream_video(path)  # what `arvid extend` reads
    assert streamed.count == len(frames)
    np.testing.assert_array_equal(np.stack(list(streamed.frames)), clip.frames)


def test_a_file_that_is_no_video_is_refused_in_one_line(tmp_path):
    for name, data in (("notes.txt", b"hello, not a video\n" * 40), ("data.bin", bytes(range(256)) * 8),
                       ("list.m3u8", b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n#EXT-X-ENDLIST\n")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ArvidError) as info:
            read_video(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name} is not a video PyAV can read") and "\n" not in message
        assert file_kind(tmp_path / name) is None  # a playlist is never opened: it names other files


def test_images_and_arrays_are_known_by_content(tmp_path):
    write_video(tmp_path / "frames", moving_square(T=2))
    png = tmp_path / "frames" / "frame_00000.png"
    (tmp_path / "picture.dat").write_bytes(png.read_bytes())
    np.save(tmp_path / "array.npy", moving_square(T=3))
    (tmp_path / "array.bin").write_bytes((tmp_path / "array.npy").read_bytes())
    assert file_kind(tmp_path / "picture.dat") == "image" and read_video(tmp_path / "picture.dat").frames.shape[0] == 1
    assert file_kind(tmp_path / "array.bin") == "npy"
    np.testing.assert_array_equal(read_video(tmp_path / "array.bin").frames, moving_square(T=3))


def test_extend_and_tokenize_read_a_renamed_mpeg(tmp_path, capsys):
    from arvid.generator import Generator, GeneratorConfig
    from arvid.kernels import use_backend
    from arvid.pipeline import Arvid
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    tok = Tokenizer(TokenizerConfig.preset("tiny"))
    gen = Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4))
    Arvid(tok, gen, "cpu").save_pretrained(tmp_path / "model")
    clip = encode(tmp_path / "input.mp4", "mpeg", "mpeg1video", moving_square(T=9, H=16, W=16))
    with use_backend("pytorch"):
        assert main(["extend", str(clip), "--model", str(tmp_path / "model"), "--frames", "2",
                     "--out", str(tmp_path / "out.npy")]) == 0, capsys.readouterr().err
    assert np.load(tmp_path / "out.npy").shape == (11, 16, 16, 1)
    assert main(["tokenize", str(clip), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "c.npz")]) == 0
    (tmp_path / "notes.mp4").write_text("not a video")
    capsys.readouterr()
    assert main(["tokenize", str(tmp_path / "notes.mp4"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "d.npz")]) == 2
    assert "notes.mp4 is not a video PyAV can read" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a video")
    assert main(["tokenize", str(tmp_path / "notes.txt"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "d.npz")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "is not a video PyAV can read" in err[0], err
    assert not (tmp_path / "d.npz").exists()


# ------------------------------------------------------------------------------------- the folder dataset


def clip_folder(root, n: int, T: int = 8, size: int = 16):
    """`n` .npy clips under `root`, each filled with its own number: root/v00.npy ..."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / f"v{i:02d}.npy", np.full((T, size, size, 3), i * 10, np.uint8))
    return root


def test_a_tenth_of_the_files_is_held_out_by_path_and_stays_held_out_as_files_are_added():
    names = [f"clip_{i}.mp4" for i in range(200)]
    held = held_out_files(names)
    assert 0.05 * 200 < len(held) < 0.15 * 200
    assert set(held) == {n for n in names if file_share(n) < HOLD_OUT}
    more = held_out_files(names + [f"new/clip_{i}.mp4" for i in range(100)])
    assert set(held) <= set(more)  # adding files: no held-out file returns to training, no training file leaves
    assert set(more) - set(held) <= {f"new/clip_{i}.mp4" for i in range(100)}
    for n in range(1, 40):  # small folders: at least one held out from MIN_FILES_TO_HOLD_OUT files, never all
        some = held_out_files(names[:n])
        assert (len(some) >= 1) == (n >= MIN_FILES_TO_HOLD_OUT) and len(some) < max(n, 1)
        grown = held_out_files(names[:n + 1])
        if n >= MIN_FILES_TO_HOLD_OUT:  # a training file never becomes held out
            assert not (set(names[:n]) - set(some)) & set(grown)


def test_the_training_split_never_reads_a_held_out_file(tmp_path, monkeypatch):
    root = clip_folder(tmp_path / "videos", 14)
    read = []
    real_read = video_pkg.read_video
    monkeypatch.setattr(video_pkg, "read_video", lambda path, **kw: read.append(path) or real_read(path, **kw))
    train = make_dataset("folder", path=root, frames=4, size=16, split="train")
    held = set(train.held_out)
    assert 1 <= len(held) <= 7 and set(train.files) == set(train.all_files) - held
    values = {int(train[i].video[0, 0, 0, 0]) for i in range(200)}
    assert read and not held & set(read)
    assert values == {int(p.stem[1:]) * 10 for p in train.files}  # every training file, nothing else
    read.clear()
    ev = make_dataset("folder", path=root, frames=4, size=16, split="eval")
    assert ev.is_held_out and ev.files == train.held_out
    assert {int(ev[i].video[0, 0, 0, 0]) for i in range(50)} == {int(p.stem[1:]) * 10 for p in held}
    assert set(read) <= held
    names = ", ".join(p.name for p in train.held_out)
    assert train.notice() == f"held out for evaluation: {len(held)} of 14 files: {names}"
    assert ev.source == "held-out clips" and train.source == "clips (training split, not held out)"


def test_a_folder_too_small_to_hold_out_says_so_and_skips_files_that_are_no_videos(tmp_path):
    root = clip_folder(tmp_path / "two", 2)
    (root / "notes.txt").write_text("my holiday")
    write_video(root / "cover", moving_square(T=1, H=16, W=16))  # a folder of one png frame: not a video file
    (root / "cover.jpg").write_bytes((root / "cover" / "frame_00000.png").read_bytes())
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    ev = make_dataset("folder", path=root, frames=4, size=16, split="eval")
    assert not ev.held_out and not ev.is_held_out and ev.files == ev.all_files
    assert [p.name for p in ev.all_files] == ["v00.npy", "v01.npy"]
    assert sorted(p.name for p in ev.skipped) == ["cover.jpg", "frame_00000.png", "notes.txt"]
    notice = ev.notice()
    assert "none (2 video files; at least 3 are needed" in notice and "not held out" in notice
    assert "skipped 3 files that are not videos: cover/frame_00000.png, cover.jpg, notes.txt" in notice
    assert ev.source == "clips (from the training files, not held out)"
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "notes.txt").write_text("my holiday")
    (pictures / "cover.jpg").write_bytes((root / "cover.jpg").read_bytes())
    with pytest.raises(ArvidError, match=r"no video files found under .*\(2 other files skipped: cover.jpg, notes.txt\)"):
        make_dataset("folder", path=pictures)


def test_the_folder_dataset_reads_mpeg_and_renamed_files_and_arvid_data_writes_them(tmp_path, capsys):
    root = tmp_path / "mine"
    root.mkdir()
    encode(root / "a.mpg", "mpeg", "mpeg1video", moving_square(T=10, H=32, W=32))
    encode(root / "b.ts", "mpegts", "mpeg2video", moving_square(T=10, H=32, W=32))
    encode(root / "c.mp4", "mpeg", "mpeg1video", moving_square(T=10, H=32, W=32))  # an .mpg called .mp4
    encode(root / "d.dat", "mp4", "mpeg4", moving_square(T=10, H=32, W=32))
    ds = make_dataset("folder", path=root, frames=6, size=32, split="train")
    assert [p.name for p in ds.all_files] == ["a.mpg", "b.ts", "c.mp4", "d.dat"]
    assert len(ds.held_out) == 1 and ds[0].video.shape == (6, 32, 32, 3) and ds.fps == 25.0
    assert main(["data", "folder", "--path", str(root), "--out", str(tmp_path / "out"), "--frames", "6",
                 "--size", "32", "--count", "2", "--format", "npy"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.json", "sample_000.npy",
                                                                    "sample_001.npy", "sheet.png"]
    assert f"held out for evaluation: 1 of 4 files: {ds.held_out[0].name}" in capsys.readouterr().err


def test_eval_tokenizer_calls_only_held_out_clips_held_out(tmp_path, capsys):
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    Tokenizer(TokenizerConfig.preset("tiny", channels=3)).save_pretrained(tmp_path / "tok")
    for n, said, flag in ((14, "2 held-out clips of 5 frames", "--data-path"),
                          (2, "2 clips (from the training files, not held out) of 5 frames", "--path")):
        root = clip_folder(tmp_path / f"folder{n}", n)
        capsys.readouterr()
        assert main(["eval", "tokenizer", str(tmp_path / "tok"), "--dataset", "folder", flag, str(root),
                     "--clips", "2", "--frames", "5", "--size", "16", "--no-h264",
                     "--json", str(tmp_path / f"{n}.json")]) == 0
        out = capsys.readouterr().out
        assert said in out, out
        assert ("held-out" in out) == (n == 14)
        assert json.loads((tmp_path / f"{n}.json").read_text())["held_out"] == (n == 14)


def test_training_on_a_folder_says_what_is_held_out_and_keeps_the_footages_statistics(tmp_path, capsys):
    """The tokenizer of a folder run records what the footage looks like (so extend can tell an input far from it)
    and prints which files evaluation keeps apart."""
    from arvid.data.stats import PixelStats, training_stats
    from arvid.tokenizer import Tokenizer

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        write_video(videos / f"clip{i}.mp4", np.roll(moving_square(T=12), 3 * i, axis=2), fps=8)
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", "--out", str(out), "--dataset", "folder", "--data-path", str(videos),
                 "--preset", "tiny", "--frames", "5", "--size", "32", "--steps", "1", "--batch-size", "2",
                 "--eval-every", "0", "--threads", "1"]) == 0
    printed = capsys.readouterr()
    assert "held out for evaluation:" in printed.out + printed.err
    notes = Tokenizer.from_pretrained(out).config.notes
    stats, what = training_stats(notes)
    assert isinstance(stats, PixelStats) and "folder" in what
    assert stats.colour > 0.01  # the colour footage it was trained on, not a known dataset's figures
