"""Nothing lost, third pass (issue 33): reproducible video files, hostile code files, the API refusing what the
CLI refuses, and the remaining unclear answers.

Each case asserts the exit code, one `arvid: error:` line (no traceback) for a refusal through the CLI, an
`ArvidError` through the API, the user's files unchanged, and no temporary left.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from arvid.cli.main import main
from arvid.errors import ArvidError
from arvid.kernels import use_backend
from cli_cases import listing, no_temporaries, refused, run
from corpus import tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(autouse=True)
def pytorch_attention():
    with use_backend("pytorch"):
        yield


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- reproducible files


def _gray_clip(size: int = 64, frames: int = 13) -> np.ndarray:
    """Gray blocks that move: the kind of clip arvid makes (64x64, one channel)."""
    blocks = np.random.default_rng(11).integers(0, 256, (frames, 8, 8), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, size // 8, 1), size // 8, 2)[..., None]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_the_same_frames_give_the_same_file_whatever_ran_before(tmp_path, suffix):
    from arvid.video import write_video

    clip, hashes = _gray_clip(), set()
    for i in range(32):  # memory in other states between the writes, as while a model generates
        churn = [np.random.default_rng(i).integers(0, 256, n, dtype=np.uint8).tobytes()
                 for n in (4096, 8192, 65536, 12288, 1 << 20, 300 + 997 * i)]
        del churn
        write_video(tmp_path / f"{i}{suffix}", clip, fps=8)
        hashes.add(digest(tmp_path / f"{i}{suffix}"))
    assert len(hashes) == 1


def test_the_shipped_model_gives_the_same_mp4_for_the_same_seed(tmp_path, capsys):
    """The reported case: 13 frames of 64x64 gray, seed 11, three times."""
    from arvid.pipeline import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "generator").is_dir():
        pytest.skip("this build ships no default model")
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        code, lines = run(capsys, "generate", "--frames", 13, "--seed", 11, "--threads", 1, "--device", "cpu",
                          "--out", tmp_path / name)
        assert code == 0, lines
    assert len({digest(tmp_path / name) for name in ("a.mp4", "b.mp4", "c.mp4")}) == 1
    no_temporaries(tmp_path)


def test_the_same_seed_gives_the_same_mp4(model_dir, tmp_path, capsys):
    for name in ("a.mp4", "b.mp4"):
        code, lines = run(capsys, "generate", "--model", model_dir, "--frames", 13, "--seed", 11, "--threads", 1,
                          "--device", "cpu", "--out", tmp_path / name)
        assert code == 0, lines
    assert digest(tmp_path / "a.mp4") == digest(tmp_path / "b.mp4")
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- hostile code files


@pytest.fixture(scope="module")
def codes_file(model_dir, tmp_path_factory) -> Path:
    """A valid code file: 5 frames of 16x16 through the tiny tokenizer."""
    folder = tmp_path_factory.mktemp("codes")
    t, y, x = np.mgrid[0:5, 0:16, 0:16]
    np.save(folder / "clip.npy", ((x * 9 + y * 5 + t * 7) % 256).astype(np.uint8)[..., None])
    assert main(["tokenize", str(folder / "clip.npy"), "--model", str(model_dir / "tokenizer"),
                 "--out", str(folder / "codes.npz")]) == 0
    return folder / "codes.npz"


def _bytes_read(monkeypatch) -> list[int]:
    """Count what is decompressed from any zip member from now on."""
    import zipfile

    read, original = [0], zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = original(self, n)
        read[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    return read


@pytest.mark.parametrize("member", ["payload", "fps"])
def test_a_zip_bomb_in_a_code_file_is_refused_before_its_members_are_read(model_dir, codes_file, tmp_path, capsys,
                                                                          monkeypatch, member):
    """Three zero-filled members of 64 MiB (a few KB on disk): an unknown name, or a known one far over its size."""
    import zipfile

    bomb = tmp_path / "bomb.npz"
    names = [f"payload{i}.npy" for i in range(3)] if member == "payload" else [f"{member}.npy"]
    with zipfile.ZipFile(codes_file) as good, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in good.infolist():
            if info.filename not in names:
                zf.writestr(info, good.read(info))
        for name in names:
            with zf.open(name, "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (64 << 20,)})
                for _ in range(64):
                    f.write(bytes(1 << 20))
    read = _bytes_read(monkeypatch)
    refused(capsys, "detokenize", bomb, "--model", model_dir / "tokenizer", "--out", tmp_path / "o.npy",
            match="not an arvid code file")
    assert read[0] < 1 << 20, f"{read[0] >> 20} MiB decompressed before the refusal"
    assert not (tmp_path / "o.npy").exists()
    no_temporaries(tmp_path)


# ---------------------------------------------------------------- the API refuses what the CLI refuses


@pytest.fixture(scope="module")
def model(model_dir):
    from arvid.pipeline import Arvid

    return Arvid.from_pretrained(model_dir, device="cpu")


@pytest.mark.parametrize("seed", [2**64, -1, None, 1.5, "0", True])
def test_the_api_refuses_the_seeds_the_cli_refuses(model, capsys, model_dir, tmp_path, seed):
    with pytest.raises(ArvidError, match=r"^seed must be a whole number from 0 to 2\*\*63 - 1, got"):
        model.generate(2, seed=seed)
    with pytest.raises(ArvidError, match=r"^seed must be a whole number"):
        model.extend(np.zeros((3, 16, 16, 1), np.uint8), 2, seed=seed)
    if isinstance(seed, int) and not isinstance(seed, bool):
        line = refused(capsys, "generate", "--model", model_dir, "--frames", 2, "--seed", seed, "--out",
                       tmp_path / "o.npy", match="--seed must be a whole number from 0 to 2**63 - 1, got")
        assert line.endswith(f"got {seed}")


@pytest.fixture(scope="module")
def labelled_model():
    """The tiny model, conditioned on 2 labels of 10 classes per clip."""
    import torch

    from arvid.generator import Generator, GeneratorConfig
    from arvid.pipeline import Arvid
    from arvid.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny"))
    return Arvid(tok, Generator(GeneratorConfig.from_name("tiny", vocab_size=tok.codebook_size, latent_h=4, latent_w=4,
                                                          num_classes=10, labels_per_clip=2)), "cpu")


@pytest.mark.parametrize("labels", [[3 + 1j, 7], [1e30, 3], [float("nan"), 3], [float("inf"), 3], [True, 3], ["3", "7"],
                                    [2**70, 3]])
def test_the_api_refuses_labels_that_are_not_whole_numbers_in_range(labelled_model, labels):
    with pytest.raises(ArvidError, match="label") as e:
        labelled_model.generate(2, labels=labels)
    assert "-9223372036854775808" not in str(e.value)
    assert labelled_model.generate(2, labels=[3, -1]).shape[:2] == (1, 2)


def test_from_pretrained_refuses_what_is_not_a_path():
    from arvid.pipeline import Arvid

    with pytest.raises(ArvidError, match="a model folder's path"):
        Arvid.from_pretrained(123)


def test_extend_refuses_a_two_channel_clip_as_the_reader_does(model, tmp_path, capsys, model_dir):
    clip = np.zeros((3, 16, 16, 2), np.uint8)
    with pytest.raises(ArvidError, match=r"2 channels are not supported .*expected 1 \(gray\) or 3 \(RGB\)"):
        model.extend(clip, 2)
    np.save(tmp_path / "two.npy", clip)
    refused(capsys, "extend", tmp_path / "two.npy", "--model", model_dir, "--frames", 2, "--out", tmp_path / "o.npy",
            match="2 channels are not supported")


def test_extend_refuses_a_batch_other_than_the_clips_given(model):
    clips = np.zeros((2, 3, 16, 16, 1), np.uint8)
    with pytest.raises(ArvidError, match="batch=3 .* 2 clips"):
        model.extend(clips, 2, batch=3)
    with pytest.raises(ArvidError, match="batch=3 .* 2 clips"):
        next(iter(model.stream(2, clips, batch=3)))
    assert model.extend(clips, 2, batch=2).shape[0] == 2
    assert model.extend(clips, 2).shape[0] == 2  # batch left at its default takes the clips' count


# ---------------------------------------------------------------- unclear answers


@pytest.mark.parametrize("suffix, fps", [(".mp4", "0.0001"), (".webm", "0.0004"), (".gif", "0.001")])
def test_a_frame_rate_the_file_cannot_store_is_refused_before_work(model_dir, tmp_path, capsys, suffix, fps):
    refused(capsys, "generate", "--model", model_dir, "--frames", 2, "--fps", fps, "--out", tmp_path / f"o{suffix}",
            match="frames per second")
    assert list(tmp_path.iterdir()) == []


def test_the_lowest_frame_rate_a_file_stores_is_kept(tmp_path):
    from arvid.video import read_video, write_video

    write_video(tmp_path / "slow.mp4", np.zeros((2, 16, 16, 1), np.uint8), fps=0.01)
    assert read_video(tmp_path / "slow.mp4").fps == pytest.approx(0.01, rel=0.01)


@pytest.mark.parametrize("name", [".npy", ".mp4", ".GIF"])
def test_an_output_named_only_by_its_suffix_is_refused(model_dir, tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "generate", "--model", model_dir, "--frames", 2, "--out", name, match="clip" + name.lower())
    assert list(tmp_path.iterdir()) == []


def test_a_model_path_that_is_a_file_is_called_a_file(model_dir, tmp_path, capsys):
    from arvid.pipeline import Arvid

    (tmp_path / "m").write_text("mine")
    refused(capsys, "generate", "--model", tmp_path / "m", "--frames", 2, "--out", tmp_path / "o.npy",
            match="is a file, not a model folder")
    with pytest.raises(ArvidError, match="is a file, not a model folder"):
        Arvid.from_pretrained(tmp_path / "m")
    assert (tmp_path / "m").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("expression", ["bad ((", "and", "a or"])
def test_a_bad_bench_selection_is_refused_before_anything_runs(tmp_path, capsys, expression):
    code = main(["bench", "kernels", "--quick", "--device", "cpu", "-k", expression, "--out", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("arvid: error: -k"), (out, err)
    assert "pytest -k expression" in lines[0] and not out.strip()
    assert not (tmp_path / "b").exists()


def test_data_from_a_folder_of_only_short_videos_is_one_line_and_no_folder(tmp_path, capsys):
    from arvid.video import write_video

    (tmp_path / "videos").mkdir()
    for i in range(2):
        write_video(tmp_path / "videos" / f"v{i}.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=8)
    before = listing(tmp_path)
    refused(capsys, "data", "folder", "--path", tmp_path / "videos", "--out", tmp_path / "d", "--count", 2,
            match="no video under")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------- Ctrl-C before a command begins, a full stdout


def test_ctrl_c_before_the_command_begins_is_one_line(monkeypatch, capsys):
    import arvid.cli.main as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["info"]) == 130
    out, err = capsys.readouterr()
    assert err.strip() == "arvid: interrupted" and not out


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["info", "--json"], ["info"], ["--help"]])
def test_a_full_stdout_is_one_line_not_a_traceback(argv):
    import os
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "arvid", *argv], stdout=full, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("arvid: error: cannot write to standard output"), lines


# ---------------------------------------------------------------- a full disk while writing weights


def _disk_full(monkeypatch) -> None:
    """safetensors' writer failing as it does on a full disk (its own SafetensorError, not an OSError)."""
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    import arvid.files
    import arvid.train.checkpoint

    monkeypatch.setattr(arvid.files, "save_file", full)
    monkeypatch.setattr(arvid.train.checkpoint, "save_file", full, raising=False)


def test_a_full_disk_during_pack_is_one_line(model_dir, tmp_path, capsys, monkeypatch):
    _disk_full(monkeypatch)
    refused(capsys, "pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator",
            "--out", tmp_path / "packed", match="No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_a_training_checkpoint_is_one_line(tmp_path, capsys, monkeypatch):
    assert main(["train", "toy", "--out", str(tmp_path / "run"), "--steps", "2", "--ckpt-every", "1"]) == 0
    before = listing(tmp_path)
    _disk_full(monkeypatch)
    refused(capsys, "train", "toy", "--out", tmp_path / "run", "--steps", "4", "--ckpt-every", "1",
            "--resume", match="No space left on device")
    after = listing(tmp_path)
    assert {k: v for k, v in after.items() if "step-00000002" in k} == {k: v for k, v in before.items()
                                                                         if "step-00000002" in k}
    no_temporaries(tmp_path)


def test_pack_onto_a_dangling_symlink_is_one_line(model_dir, tmp_path, capsys):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    refused(capsys, "pack", "--tokenizer", model_dir / "tokenizer", "--generator", model_dir / "generator",
            "--out", tmp_path / "link", match="symbolic link")
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link"]


# ---------------------------------------------------------------- what cannot fit is refused before work


class WorkBegan(Exception):
    pass


def _no_work(monkeypatch) -> None:
    """Make the machine hold 64 MiB and stop any generation or dataset clip at its first step."""
    import arvid.utils.memory
    from arvid.pipeline import Arvid

    def began(*args, **kwargs):
        raise WorkBegan

    monkeypatch.setattr(arvid.utils.memory, "available_bytes", lambda: 64 << 20)
    monkeypatch.setattr(Arvid, "latents", began)
    monkeypatch.setattr(Arvid, "prepare", began)


def test_a_result_that_cannot_fit_in_memory_is_refused_before_work(model, monkeypatch):
    _no_work(monkeypatch)
    for call in (lambda: model.generate(10_000_000), lambda: model.extend(np.zeros((3, 16, 16, 1), np.uint8), 10_000_000),
                 lambda: model.generate(1_000_000, batch=4)):
        with pytest.raises(ArvidError, match="of memory .* stream"):
            call()


@pytest.mark.parametrize("argv, match", [
    (["--frames", "100000000"], "lower --frames or --size"),
    (["--size", "200000"], "lower --frames or --size"),
    (["--count", "10000000"], "--count 10,000,000 is over"),
])
def test_arvid_data_refuses_what_cannot_fit_before_work(tmp_path, capsys, monkeypatch, argv, match):
    import arvid.data

    _no_work(monkeypatch)
    monkeypatch.setattr(arvid.data, "make_dataset", lambda *a, **k: (_ for _ in ()).throw(WorkBegan()))
    refused(capsys, "data", "shapes", "--out", tmp_path / "d", *argv, match=match)
    assert list(tmp_path.iterdir()) == []


def test_arvid_data_keeps_only_the_clips_its_sheet_shows(tmp_path, capsys, monkeypatch):
    import arvid.video

    shown = []
    monkeypatch.setattr(arvid.video, "clips_sheet", lambda clips, path, **k: shown.append(len(clips)) or
                        path.write_bytes(b""))
    assert main(["data", "shapes", "--out", str(tmp_path / "d"), "--count", "20", "--frames", "2", "--size", "16",
                 "--format", "npy"]) == 0
    assert shown == [16] and len(list((tmp_path / "d").glob("sample_*.npy"))) == 20


def test_training_refuses_a_batch_that_cannot_fit_before_work(tmp_path, capsys, monkeypatch):
    import arvid.train.tokenizer

    _no_work(monkeypatch)
    monkeypatch.setattr(arvid.train.tokenizer, "make_dataset", lambda *a, **k: (_ for _ in ()).throw(WorkBegan()))
    refused(capsys, "train", "tokenizer", "--out", tmp_path / "run", "--batch-size", 1_000_000, "--steps", 1,
            match="lower --batch-size, --frames or --size")
    assert list(tmp_path.iterdir()) == []


def test_training_into_a_run_folder_refuses_before_tokenizing(tmp_path, capsys, monkeypatch):
    import arvid.train.generator

    assert main(["train", "toy", "--out", str(tmp_path / "run"), "--steps", "1", "--ckpt-every", "1"]) == 0
    before = listing(tmp_path)
    monkeypatch.setattr(arvid.train.generator, "task_from_args", lambda *a, **k: (_ for _ in ()).throw(WorkBegan()))
    refused(capsys, "train", "generator", "--out", tmp_path / "run", match="already holds a training checkpoint")
    assert listing(tmp_path) == before


def test_a_model_too_big_for_the_memory_is_called_too_big_not_corrupt(model_dir, tmp_path, capsys, monkeypatch):
    import arvid.files

    def capped(*args, **kwargs):  # what safetensors raises under a memory cap (ulimit -v): the mmap fails
        raise MemoryError("Cannot allocate memory (os error 12)")

    monkeypatch.setattr(arvid.files, "load_file", capped)
    line = refused(capsys, "generate", "--model", model_dir, "--frames", 2, "--out", tmp_path / "o.npy",
                   match="does not fit in the memory")
    assert "corrupt" not in line
    monkeypatch.undo()
    import arvid.utils.memory

    monkeypatch.setattr(arvid.utils.memory, "available_bytes", lambda: 1024)
    refused(capsys, "generate", "--model", model_dir, "--frames", 2, "--out", tmp_path / "o.npy",
            match="does not fit in the memory")
    assert list(tmp_path.iterdir()) == []


def test_extend_reads_a_long_input_as_a_stream_its_memory_does_not_grow_with_it(model_dir, tmp_path):
    import subprocess
    import sys

    from arvid.video import VideoWriter

    def clip(frames: int) -> Path:
        path = tmp_path / f"in{frames}.mp4"
        writer = VideoWriter(path, 8)
        y, x = np.mgrid[:128, :128]
        for t in range(frames):
            writer.write(np.stack([(x + t) % 256, (y * 2 + t) % 256, (x + y + 3 * t) % 256], -1).astype(np.uint8))
        writer.close()
        return path

    def peak_mib(path: Path) -> float:  # the peak RSS of `arvid extend` in a fresh process
        code = ("import resource, sys\nfrom arvid.cli.main import main\nfrom arvid.kernels import use_backend\n"
                "with use_backend('pytorch'):\n    rc = main(sys.argv[1:])\n"
                "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        out = tmp_path / f"{path.stem}.out.mp4"
        done = subprocess.run([sys.executable, "-c", code, "extend", str(path), "--model", str(model_dir), "--frames",
                               "2", "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
        rc, peak = done.stdout.split()[-2:]
        assert rc == "0", done.stderr
        return float(peak)

    short, long = peak_mib(clip(100)), peak_mib(clip(1200))
    # 1,200 decoded 128x128 RGB frames are 56 MiB, held twice when the input is read whole: streamed, a few MiB
    assert long - short < 20, f"extend's peak memory: {short:.0f} MiB for 100 input frames, {long:.0f} MiB for 1,200"
