"""The tokenizer from the outside: tokenize/detokenize files, eval against H.264, training (resume, DDP)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arvid.cli.main import main
from arvid.errors import ArvidError
from arvid.tokenizer import Tokenizer, TokenizerConfig
from arvid.tokenizer.codes import load_codes, save_codes
from arvid.eval.tokenizer import _db_mean, _frame_db, _frame_mse, h264_at_bits, h264_roundtrip, psnr, ssim


@pytest.fixture
def tok_dir(tmp_path):
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig.preset("tiny")).eval()
    tok.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def frames(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)  # (T, H, W, C)


def test_tokenize_detokenize_round_trip(tmp_path, tok_dir, capsys):
    video = frames(7)
    np.save(tmp_path / "clip.npy", video)
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(tok_dir), "--out", str(tmp_path / "c.npz")]) == 0
    tok = Tokenizer.from_pretrained(tok_dir)
    f = load_codes(tmp_path / "c.npz")
    assert np.array_equal(f.codes, tok.encode_video(video))  # streamed in chunks == whole clip
    assert (f.frames, f.height, f.width, f.codebook_size) == (7, 16, 16, 25)
    assert main(["detokenize", str(tmp_path / "c.npz"), "--model", str(tok_dir), "--out", str(tmp_path / "out.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), tok.decode_to_video(f.codes))
    assert "bits per pixel" in capsys.readouterr().out


def test_tokenize_frame_count_error_and_fit(tmp_path, tok_dir, capsys):
    np.save(tmp_path / "clip.npy", frames(6))
    out = str(tmp_path / "c.npz")
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(tok_dir), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "6 frames" in err and "5 or 7" in err and "--fit" in err and not os.path.exists(out)
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(tok_dir), "--out", out, "--fit", "pad"]) == 0
    assert load_codes(out).frames == 7


def test_codes_and_model_must_match(tmp_path, tok_dir):
    tok = Tokenizer.from_pretrained(tok_dir)
    save_codes(tmp_path / "c.npz", tok.encode_video(frames(5)), tok, fps=8.0)
    load_codes(tmp_path / "c.npz").check(tok)
    other = Tokenizer(TokenizerConfig.preset("tiny"))  # same settings, other weights
    with pytest.raises(ArvidError, match="other weights"):
        load_codes(tmp_path / "c.npz").check(other)
    bigger = Tokenizer(TokenizerConfig.preset("tiny", levels=[5, 5, 5]))
    with pytest.raises(ArvidError, match="25 codes.*125"):
        load_codes(tmp_path / "c.npz").check(bigger)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ArvidError, match="not an arvid code file"):
        load_codes(tmp_path / "junk.npz")


def test_metrics_and_h264_at_equal_bits():
    video = np.zeros((9, 32, 32, 1), np.uint8)
    video[:, 8:24, 8:24] = 200
    video[4:, 10:20, 12:16] = 60  # a change mid-clip
    assert psnr(video, video) == float("inf") and ssim(video, video) == pytest.approx(1.0)
    noisy = np.clip(video.astype(int) + 8, 0, 255).astype(np.uint8)
    assert psnr(video, noisy) == pytest.approx(10 * np.log10(255**2 / 64), abs=0.05)
    assert ssim(video, noisy) < 1.0
    n30, dec30 = h264_roundtrip(video, crf=30)
    n10, dec10 = h264_roundtrip(video, crf=10)
    assert dec30.shape == video.shape and n10 > n30 > 0 and psnr(video, dec10) >= psnr(video, dec30)
    crf, nbytes, _ = h264_at_bits(video, 8 * n30)
    assert nbytes * 8 >= 8 * n30 and crf >= 30  # at least the bits asked for, with the fewest such bits


def test_per_frame_psnr_pools_back_to_the_clip_psnr():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    b = a.copy()
    b[2:] = np.clip(a[2:].astype(int) + rng.integers(-9, 10, a[2:].shape), 0, 255)  # frames 0-1 exact
    db = _frame_db([_frame_mse(a, b)])
    assert db[:2] == [float("inf")] * 2 and all(30 < d < 45 for d in db[2:])
    assert _db_mean(db) == pytest.approx(psnr(a, b), abs=1e-9)


def test_eval_tokenizer_prints_the_table(tmp_path, tok_dir, capsys):
    code = main(["eval", "tokenizer", str(tok_dir), "--dataset", "moving-mnist", "--size", "32", "--frames", "5",
                 "--clips", "2", "--device", "cpu", "--json", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "PSNR dB" in out and "arvid tokenizer" in out and "H.264 (libx264)" in out
    report = json.loads((tmp_path / "r.json").read_text())
    tok_row, h264_row = report["tokenizer"], report["h264"]
    assert tok_row["bpp"] == pytest.approx(3 * 8 * 8 * np.log2(25) / (5 * 32 * 32))
    assert h264_row["bpp"] >= tok_row["bpp"]  # H.264 never gets fewer bits
    # a clip is at H.264's floor when even CRF 51 spends more bits; the table says how many are
    assert 0 <= report["h264_floor"] <= 2 and (report["h264_floor"] < 2 or report["h264_crf"] == 51)
    assert f"{report['h264_floor']}/2 clips at CRF 51, its lowest rate" in out
    assert 0 < tok_row["usage"] <= 1 and 1 <= tok_row["perplexity"] <= 25
    # per-frame PSNR pools the clips' error at each frame; the whole-clip PSNR pools it over frames too
    assert len(report["frame_psnr"]) == len(report["h264_frame_psnr"]) == 5
    assert "per frame: first" in out
    assert main(["eval", "tokenizer", str(tok_dir), "--frames", "4", "--clips", "1"]) == 2


def test_eval_tokenizer_plots_the_h264_rate_distortion_curve(tmp_path, tok_dir, capsys):
    args = ["eval", "tokenizer", str(tok_dir), "--dataset", "moving-mnist", "--size", "32", "--frames", "5",
            "--clips", "2", "--device", "cpu"]
    assert main([*args, "--rd-plot", str(tmp_path / "rd.png"), "--rd-crfs", "51,20,40",
                 "--json", str(tmp_path / "r.json")]) == 0
    curve = json.loads((tmp_path / "r.json").read_text())["h264_curve"]
    assert [r["crf"] for r in curve] == [20, 40, 51]
    # a higher CRF spends fewer bits and loses quality
    assert curve[0]["bpp"] > curve[1]["bpp"] > curve[2]["bpp"] and curve[0]["psnr"] > curve[2]["psnr"]
    assert (tmp_path / "rd.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    for bad, message in ((["--rd-plot", str(tmp_path / "rd.jpg")], "ending in .png"),
                         (["--rd-plot", str(tmp_path / "x.png"), "--rd-crfs", "30,60"], "CRFs in [0, 51]"),
                         (["--rd-plot", str(tmp_path / "x.png"), "--rd-crfs", "a"], "comma-separated integers")):
        assert main([*args, *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


TRAIN = ["--preset", "tiny", "--dataset", "shapes", "--size", "16", "--frames", "5", "--device", "cpu",
         "--warmup", "1", "--log-every", "1", "--lr", "1e-3"]


def weights(folder) -> dict:
    return Tokenizer.from_pretrained(folder).state_dict()


def test_training_resumes_exactly(tmp_path):
    assert main(["train", "tokenizer", "--out", str(tmp_path / "a"), "--steps", "4", "--batch-size", "2", *TRAIN]) == 0
    assert main(["train", "tokenizer", "--out", str(tmp_path / "b"), "--steps", "2", "--batch-size", "2", *TRAIN]) == 0
    assert main(["train", "tokenizer", "--out", str(tmp_path / "b"), "--steps", "4", "--batch-size", "2",
                 "--resume", *TRAIN]) == 0
    state = json.loads((tmp_path / "b" / "trainer_state.json").read_text())
    assert state["step"] == 4
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["decoder.conv_out.conv.weight"], Tokenizer(Tokenizer.from_pretrained(tmp_path / "a").config)
                           .state_dict()["decoder.conv_out.conv.weight"])


def test_a_run_saved_before_newer_settings_existed_resumes(tmp_path):
    """A checkpoint whose config.json predates settings added since (context) resumes: they take their defaults;
    one that holds a setting since removed at its "off" value (motion_search 0) resumes too. A setting that really
    differs still refuses to resume."""
    out = tmp_path / "old"
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "2", "--batch-size", "2", *TRAIN]) == 0
    for path in out.rglob("config.json"):
        d = json.loads(path.read_text())
        d["config"].pop("context", None)  # (the top-level file may be a link to the checkpoint's)
        d["config"]["motion_search"] = 0
        path.write_text(json.dumps(d))
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "3", "--batch-size", "2", "--resume", *TRAIN]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 3
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "4", "--batch-size", "2", "--resume", "--context",
                 *TRAIN]) == 2


def test_two_process_gloo_ddp_step_matches_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "arvid", "train", "tokenizer", "--out", str(tmp_path / "ddp"), "--steps", "1", "--batch-size", "1", *TRAIN]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert main(["train", "tokenizer", "--out", str(tmp_path / "one"), "--steps", "1", "--batch-size", "2", *TRAIN]) == 0
    ddp, one = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    # two processes x 1 clip = one process x 2 clips (the same clips, gradients averaged). Adam's first step
    # moves each entry by about lr·sign(grad), so entries whose exact gradient is 0 (a conv bias right before
    # a per-channel GroupNorm) move by rounding noise; every weight matrix must match.
    for k in one:
        if one[k].ndim > 1:
            torch.testing.assert_close(ddp[k], one[k], rtol=0, atol=1e-5)
    close = sum(int(((ddp[k] - one[k]).abs() <= 1e-5).sum()) for k in one)
    assert close >= 0.99 * sum(v.numel() for v in one.values())


@pytest.mark.parametrize("quantizer,warp", [("fsq", False), ("vq", False), ("fsq", True)])
def test_decoder_only_training_keeps_every_code(tmp_path, quantizer, warp, capsys):
    """--init DIR --train-part decoder: the encoder and quantizer (VQ's EMA codebook too) stay bit-identical,
    the decoder learns, and a code file written with DIR still decodes with the new tokenizer; --warp adds
    motion compensation to that decoder and changes no code either."""
    torch.manual_seed(0)
    base = Tokenizer(TokenizerConfig.preset("tiny", quantizer=quantizer, channels=3))
    clip = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)  # shapes is RGB
    base(torch.as_tensor(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)  # a VQ codebook inits on first use
    base.save_pretrained(tmp_path / "base")
    np.save(tmp_path / "clip.npy", clip)
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(tmp_path / "base"),
                 "--out", str(tmp_path / "c.npz")]) == 0
    assert main(["train", "tokenizer", "--out", str(tmp_path / "ft"), "--steps", "3", "--batch-size", "2",
                 "--init", str(tmp_path / "base"), "--train-part", "decoder", *(["--warp"] if warp else []),
                 *[a for a in TRAIN if a not in ("--preset", "tiny")]]) == 0
    before, after = weights(tmp_path / "base"), weights(tmp_path / "ft")
    frozen = [k for k in before if not k.startswith("decoder.")]
    assert frozen and [k for k in frozen if not torch.equal(before[k], after[k])] == []
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    ft = Tokenizer.from_pretrained(tmp_path / "ft")
    assert ft.config.fingerprint() == Tokenizer.from_pretrained(tmp_path / "base").config.fingerprint()
    assert ft.config.notes["trained_part"] == "decoder" and ft.config.warp is warp
    assert any(k.startswith("decoder.motion_out.") for k in after) is warp
    video = torch.as_tensor(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.equal(ft.encode(video), Tokenizer.from_pretrained(tmp_path / "base").encode(video))
    assert main(["detokenize", str(tmp_path / "c.npz"), "--model", str(tmp_path / "ft"),
                 "--out", str(tmp_path / "out.npy")]) == 0


def test_init_and_train_part_refuse_what_they_cannot_do(tmp_path, tok_dir, capsys):
    args = ["train", "tokenizer", "--out", str(tmp_path / "ft"), "--steps", "1", "--dataset", "shapes",
            "--size", "16", "--frames", "5", "--device", "cpu"]
    assert main([*args, "--init", str(tok_dir), "--tau", "2"]) == 2
    assert "takes the architecture from that tokenizer: drop --tau" in capsys.readouterr().err
    assert main([*args, "--init", str(tok_dir), "--l1-weight", "0", "--context"]) == 2  # 0 is given, not unset
    assert "drop --context, --l1-weight" in capsys.readouterr().err
    assert main([*args, "--train-part", "decoder"]) == 2
    assert "give it with --init DIR" in capsys.readouterr().err
    assert main([*args, "--init", str(tmp_path / "missing")]) == 2
    assert main([*args, "--init", str(tok_dir)]) == 2  # shapes is RGB, the tokenizer grayscale
    assert "has 3 channel(s), but the tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def _moving_square(frames: int = 5, size: int = 32, step: int = 2) -> torch.Tensor:
    """(1, 1, T, H, W) in [-1, 1]: a blurred bright square moving `step` pixels right per frame."""
    x = torch.full((frames, size, size), -1.0)
    for t in range(frames):
        x[t, 10:18, 6 + step * t:14 + step * t] = 1.0
    x = F.avg_pool2d(x[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]  # soft edges for the flow
    return x[None, None]


def test_clip_flows_follow_the_motion():
    from arvid.tokenizer.model import tensor_to_video
    from arvid.video.flow import clip_flows

    frames = tensor_to_video(_moving_square())[0, ..., 0]  # uint8 (T, H, W)
    flows = clip_flows(frames)  # (T-1, 2, H, W) as (dy, dx): frame t reads frame t-1 two pixels to the left
    assert flows.shape == (4, 2, 32, 32) and flows.dtype == np.float32
    inside = flows[:, :, 12:16, 12:16]
    assert abs(float(inside[:, 0].mean())) < 0.5 and float(inside[:, 1].mean()) == pytest.approx(-2, abs=0.5)


def test_consistency_loss_charges_frames_that_do_not_move_with_the_clip():
    from arvid.train.tokenizer import consistency_loss

    x = _moving_square()
    assert consistency_loss(x, x).item() < 0.01  # the real clip is consistent with its own flow
    still = x[:, :, :1].expand_as(x)  # the first frame, held: it does not move as the clip moves
    flicker = x + 0.2 * (-1.0) ** torch.arange(5).view(1, 1, 5, 1, 1)
    steady = x + 0.2  # the same error in every frame: consistent
    assert consistency_loss(steady, x).item() < 0.02
    assert consistency_loss(still, x).item() > 0.05 and consistency_loss(flicker, x).item() > 0.3
    recon = x.clone().requires_grad_()
    consistency_loss(recon + 0.1 * torch.randn_like(x), x).backward()
    assert recon.grad.abs().sum() > 0


def test_consistency_weight_trains_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "cw"
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "2", "--batch-size", "2", "--warp",
                 "--consistency-weight", "1", *TRAIN]) == 0
    tok = Tokenizer.from_pretrained(out)
    assert tok.config.notes["consistency_weight"] == 1.0 and tok.config.warp
    assert "inconsistency=" in capsys.readouterr().err
    assert main(["train", "tokenizer", "--out", str(tmp_path / "bad"), "--steps", "1", "--consistency-weight",
                 "nan", *TRAIN]) == 2
    assert "--consistency-weight must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_context_tokenizer_trains_and_round_trips_code_files(tmp_path, capsys):
    """--context (conditional coding) and --temporal-kernel go into the config; its code files decode to what the
    model decodes; decoder-only training, which would change its codes, is refused before anything is written."""
    out = tmp_path / "ctx"
    assert main(["train", "tokenizer", "--out", str(out), "--steps", "2", "--batch-size", "2", "--context",
                 "--temporal-kernel", "1", "--l1-weight", "0", *TRAIN]) == 0
    tok = Tokenizer.from_pretrained(out)
    assert tok.config.context and tok.config.temporal_kernel == 1
    assert tok.config.l1_weight == 0
    video = np.random.default_rng(0).integers(0, 256, size=(9, 16, 16, 3), dtype=np.uint8)  # shapes is RGB
    np.save(tmp_path / "clip.npy", video)
    assert main(["tokenize", str(tmp_path / "clip.npy"), "--model", str(out), "--out", str(tmp_path / "c.npz")]) == 0
    f = load_codes(tmp_path / "c.npz")
    assert np.array_equal(f.codes, tok.encode_video(video))  # streamed in chunks == whole clip
    assert main(["detokenize", str(tmp_path / "c.npz"), "--model", str(out), "--out", str(tmp_path / "out.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), tok.decode_to_video(f.codes))
    capsys.readouterr()
    assert main(["train", "tokenizer", "--out", str(tmp_path / "ft"), "--steps", "1", "--init", str(out),
                 "--train-part", "decoder", *[a for a in TRAIN if a not in ("--preset", "tiny")]]) == 2
    assert "train it whole" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def test_tokenize_and_eval_refine(tmp_path, tok_dir, capsys):
    torch.manual_seed(0)
    ctx = Tokenizer(TokenizerConfig.preset("tiny", context=True)).eval()
    for out in [*ctx.context.enc_out, *ctx.context.dec_out]:  # they start at zero: make the frame shown count
        torch.nn.init.normal_(out.conv.weight, std=0.3)
    ctx.save_pretrained(tmp_path / "ctx")
    video = frames(7)
    np.save(tmp_path / "clip.npy", video)
    args = ["tokenize", str(tmp_path / "clip.npy"), "--out", str(tmp_path / "c.npz")]
    assert main([*args, "--model", str(tmp_path / "ctx"), "--refine", "4"]) == 0
    codes = load_codes(tmp_path / "c.npz").codes  # streamed in chunks == the whole-clip search
    from arvid.tokenizer import video_to_tensor

    assert np.array_equal(codes, ctx.encode(video_to_tensor(video[None]), refine=4)[0].numpy())
    assert not np.array_equal(codes, ctx.encode_video(video))
    capsys.readouterr()
    assert main([*args, "--model", str(tok_dir), "--refine", "4", "--out", str(tmp_path / "p.npz")]) == 2
    assert "codes with context" in capsys.readouterr().err and not (tmp_path / "p.npz").exists()

    ev = ["eval", "tokenizer", "--dataset", "moving-mnist", "--size", "32", "--frames", "5", "--clips", "2",
          "--device", "cpu", "--no-h264"]
    assert main([*ev, str(tmp_path / "ctx"), "--refine", "3", "--json", str(tmp_path / "r.json")]) == 0
    assert "3 refinement steps per latent frame" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["refine"] == 3
    assert main([*ev, str(tok_dir), "--refine", "3"]) == 2
    assert "--refine: refining codes needs" in capsys.readouterr().err
