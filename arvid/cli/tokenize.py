"""`arvid tokenize VIDEO --out codes.npz` and `arvid detokenize codes.npz --out VIDEO`.

Both run the tokenizer a few latent frames at a time, carrying the causal convolutions' state, so its
activations do not grow with the clip and the codes and frames equal one whole-clip pass. `tokenize`
holds the clip it reads and its codes; `detokenize` writes each frame to the file as it is decoded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arvid.cli._common import PARALLEL_THREADS_HELP, add_overwrite_flag, check_fps, check_overwrite, set_threads

CHUNK_LATENT = 8  # latent frames per streaming step


COMMANDS = {"tokenize": "turn a video into tokens (.npz) with a tokenizer", "detokenize": "turn tokens (.npz) back into a video"}


def register(sub) -> None:
    p = sub.add_parser(
        "tokenize", help=COMMANDS["tokenize"],
        description="Encode VIDEO (any video FFmpeg reads, by its content: mp4, mov, mkv, webm, mpg, ts, gif, ...; a "
        "folder of frames, or .npy) into the tokens of a tokenizer, "
        "written to a .npz with what is needed to decode it (codebook size, config and weights fingerprints, "
        "fps, frame count). The clip must have 1 + k·τ frames (τ: the tokenizer's temporal factor) unless "
        "--fit says how to make it fit, and frames whose sides are multiples of the spatial factor "
        "unless --size resizes them.",
    )
    p.add_argument("video", type=Path, help="video file or folder of frames")
    p.add_argument("--model", type=Path, default=None,
                   help="tokenizer folder, training run folder, or model folder with tokenizer/ (default: the "
                        "tokenizer of the model shipped with arvid)")
    p.add_argument("--out", required=True, type=Path, help="code file to write (.npz)")
    p.add_argument("--fit", choices=("trim", "pad"), default=None,
                   help="make the frame count 1 + k·τ: trim frames from the end, or pad by repeating the last")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="resize (and centre-crop) frames to HxW first, e.g. 64x64 or 64")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="context tokenizers: search STEPS gradient steps per latent frame for codes that decode "
                        "closer to the video (same bits, same decoder; slower encoding). Default 0")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=None, help=PARALLEL_THREADS_HELP)
    add_overwrite_flag(p)
    p.set_defaults(func=run_tokenize)

    d = sub.add_parser(
        "detokenize", help=COMMANDS["detokenize"],
        description="Decode a code file written by `arvid tokenize` (or by generation) into a video; the format "
        "follows the --out suffix (.mp4, .webm, .gif, .npy, or a folder of PNG frames). The tokenizer must be "
        "the one that made the codes: a clear error says so otherwise.",
    )
    d.add_argument("codes", type=Path, help="code file (.npz)")
    d.add_argument("--model", type=Path, default=None,
                   help="tokenizer folder, training run folder, or model folder with tokenizer/ (default: the "
                        "tokenizer of the model shipped with arvid)")
    d.add_argument("--out", required=True, type=Path, help="video to write")
    d.add_argument("--fps", type=float, default=None, help="frame rate (default: the one stored with the codes)")
    d.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    d.add_argument("--threads", type=int, default=None, help=PARALLEL_THREADS_HELP)
    add_overwrite_flag(d)
    d.set_defaults(func=run_detokenize)


def tokenizer_folder(model: Path | None) -> Path:
    """--model as a tokenizer folder: the shipped model's tokenizer by default, and a model folder's tokenizer/."""
    from arvid.pipeline import DEFAULT_MODEL_DIR

    folder = model if model is not None else DEFAULT_MODEL_DIR
    return folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder


def parse_size(text: str) -> tuple[int, int]:
    from arvid.errors import ArvidError

    parts = text.lower().split("x")
    try:
        sizes = [int(v) for v in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ArvidError(f"--size must be HxW or N, such as 64x64 or 64, got {text!r}")
    return (sizes[0], sizes[-1])


def _check_size(args: argparse.Namespace, tok, height: int, width: int) -> None:
    """Frames must be multiples of the spatial factor: say so naming the video and --size."""
    from arvid.errors import ArvidError

    fit = tok.fitting_size(height, width)
    if fit != (height, width) and tok.first_frames == 0:
        sized = f" (after --size {args.size})" if args.size is not None else ""
        raise ArvidError(f"{args.video}: frames of {height}x{width}{sized} do not fit this layered tokenizer: it codes "
                         f"{fit[0]}x{fit[1]} frames; resize them with --size {fit[0]}x{fit[1]}")
    if fit != (height, width):
        sized = f" (after --size {args.size})" if args.size is not None else ""
        raise ArvidError(f"{args.video}: frames of {height}x{width}{sized} do not fit this tokenizer: height and width "
                         f"must be multiples of its spatial factor {tok.spatial_factor}; resize them with --size, "
                         f"e.g. --size {fit[0]}x{fit[1]}")


def run_tokenize(args: argparse.Namespace) -> int:
    import numpy as np

    from arvid.tokenizer import check_frames, fit_frames, load_tokenizer, video_to_tensor
    from arvid.tokenizer.codes import save_codes
    from arvid.errors import ArvidError
    from arvid.utils.atomic import check_target, refuse_aliases
    from arvid.utils.memory import check_fits
    from arvid.video import fit_video, read_video
    from arvid.video.io import check_name

    check_name(str(args.out), args.out)  # the flags first: before the tokenizer loads or the clip is read
    if args.out.suffix.lower() != ".npz":
        raise ArvidError(f"--out {args.out}: codes are written as .npz; give a name ending in .npz")
    check_target(args.out)
    refuse_aliases([args.out], [args.video])
    check_overwrite(args.out, args.overwrite)
    size = parse_size(args.size) if args.size is not None else None
    set_threads(args.threads)
    tok = load_tokenizer(tokenizer_folder(args.model), device=args.device)
    tok.check_refine(args.refine)  # before reading the video
    video = read_video(args.video, channels=tok.config.channels)
    frames = video.frames
    h, w = size or frames.shape[1:3]
    # the resized clip, and the encoder's activations for a chunk of frames (float32, its first level's width)
    check_fits(len(frames) * h * w * tok.config.channels + min(len(frames), CHUNK_LATENT * tok.temporal_factor) * h * w
               * (tok.config.channels + 2 * tok.config.width) * 4, f"tokenizing {len(frames)} frames of {h}x{w}",
               "give a smaller --size, or a shorter clip")
    if size is not None:
        frames = fit_video(frames, size, mode="crop")
    if args.fit is not None:
        frames = fit_frames(frames, tok.temporal_factor, mode=args.fit, first=tok.first_frames)
    check_frames(len(frames), tok.temporal_factor, what=str(args.video), first=tok.first_frames)
    _check_size(args, tok, frames.shape[1], frames.shape[2])
    stream = tok.encoder_stream(1, refine=args.refine)
    step = CHUNK_LATENT * tok.temporal_factor
    codes = [stream.push(video_to_tensor(frames[i:i + step])) for i in range(0, len(frames), step)]
    codes = np.concatenate([c[0].cpu().numpy() for c in codes])  # (t, h, w)
    save_codes(args.out, codes, tok, fps=video.fps)
    t, h, w = codes.shape
    print(f"{args.video}: {len(frames)} frames {frames.shape[1]}x{frames.shape[2]} -> {t}x{h}x{w} tokens "
          f"({codes.size * np.log2(tok.codebook_size) / frames[..., 0].size:.4f} bits per pixel) in {args.out}")
    return 0


def run_detokenize(args: argparse.Namespace) -> int:
    import torch

    from arvid.tokenizer import load_tokenizer, tensor_to_video
    from arvid.tokenizer.codes import load_codes
    from arvid.utils.atomic import refuse_aliases
    from arvid.utils.memory import check_fits
    from arvid.video import VideoWriter, check_output

    check_fps(args.fps)
    refuse_aliases([args.out], [args.codes])
    check_output(args.out)
    check_overwrite(args.out, args.overwrite)
    set_threads(args.threads)
    f = load_codes(args.codes)
    tok = load_tokenizer(tokenizer_folder(args.model), device=args.device)
    f.check(tok)
    t, h, w = f.codes.shape
    s, tau, c = tok.spatial_factor, tok.temporal_factor, tok.config.channels
    check_fits(CHUNK_LATENT * tau * h * s * w * s * (c + 2 * tok.config.width) * 4,
               f"decoding {args.codes} ({h}x{w} tokens a latent frame: frames of {h * s}x{w * s})",
               "these codes make frames too large for this machine")
    stream = tok.decoder_stream(1)
    codes = torch.from_numpy(f.codes)[None]  # (1, t, h, w)
    total = tok.first_frames + (t - 1) * tau
    out = VideoWriter(args.out, args.fps or f.fps)
    try:
        with out:  # frames go to the file as they are decoded
            for i in range(0, t, CHUNK_LATENT):
                out.write(tensor_to_video(stream.push(codes[:, i:i + CHUNK_LATENT]))[0])  # (n, H, W, C)
    except KeyboardInterrupt as stop:  # the writer kept the frames decoded so far: a valid, shorter video
        stop.args = (f"{args.out} holds the {out.frames} frames decoded so far (a shorter clip than the {total} the "
                     "codes hold)" if out.frames else "nothing was written",)
        raise
    print(f"{args.codes}: {t} latent frames -> {out.frames} frames {h * s}x{w * s} in {out.path}")
    return 0
