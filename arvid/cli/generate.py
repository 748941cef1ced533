"""`arvid generate` (a new clip) and `arvid extend INPUT` (continue a clip), with progress and sheets."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from arvid.cli._common import THREADS_HELP, add_sampling_flags, flag, given


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, required=True, help="number of new frames to generate (any positive number)")
    p.add_argument("--out", type=Path, required=True,
                   help="output video: .mp4 (H.264), .webm, .gif, .npy, or a folder of png frames (no suffix); "
                        "with --batch B > 1, one file per clip: NAME_0.mp4, NAME_1.mp4, ...")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same clip (default 0)")
    p.add_argument("--label", type=str, default=None,
                   help="class labels, comma separated, one per object (the default Moving MNIST model: two "
                        "digits, e.g. --label 3,7); omit for unconditional generation")
    add_sampling_flags(p)
    p.add_argument("--batch", type=int, default=1, help="clips to generate at once (default 1)")
    p.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet (PNG) of the result")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder with tokenizer/ and generator/ (default: the model shipped with arvid)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the output (default: the input's, or 8)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)


def register(sub) -> None:
    g = sub.add_parser(
        "generate", help="generate a new clip of any length",
        description="Generate a new clip of exactly --frames frames. Long clips roll the KV cache forward "
        "and stream tokens straight into the decoder, so memory stays flat however long the clip is.",
    )
    _arguments(g)
    g.set_defaults(func=run_generate)
    e = sub.add_parser(
        "extend", help="continue an existing video frame by frame",
        description="Continue INPUT (mp4, webm, mkv, avi, gif, a folder of png/jpg frames, or .npy) by "
        "--frames new frames. The input is resized (short side) and centre-cropped to the model's "
        "resolution, tokenized, and its last latent frames prefill the cache. The output is the input's "
        "frames (as fitted to the model) followed by exactly --frames new ones, all of them written in the "
        "output's format: an .mp4, .webm or .gif output encodes the input's frames again (lossy: H.264 at CRF 18 "
        "moves sharp edges by up to about 20 levels), while .npy and png-folder outputs keep them exactly. Gray "
        "clips stay gray in .mp4 (H.264 4:0:0), .npy and png.",
    )
    e.add_argument("input", type=Path, help="the video to continue")
    _arguments(e)
    e.set_defaults(func=run_extend)


def _request(args) -> tuple[list[int] | None, dict]:
    """The labels and decoding settings the flags give, checked before anything is loaded."""
    from arvid.errors import ArvidError
    from arvid.generator.sampling import Sampling

    labels = None
    if args.label:
        try:
            labels = [int(x) for x in args.label.split(",") if x.strip() != ""]
        except ValueError:
            raise ArvidError(f"--label {args.label!r}: give integers separated by commas, e.g. --label 3,7") from None
    if args.frames < 1:
        raise ArvidError(f"--frames must be a positive number, got {args.frames}")
    if args.batch < 1:
        raise ArvidError(f"--batch must be at least 1, got {args.batch}")
    settings = given(args)
    Sampling.build(settings, name=flag)  # ranges, in the flags' own names
    if args.threads is not None:
        from arvid.utils.threads import check

        check(args.threads)
    return labels, settings


def _outputs(out: Path, batch: int, sheet: Path | None) -> list[Path]:
    """The output paths, each checked as write_video will check it (and --sheet as a PNG), before any work."""
    from arvid.video.io import check_output

    outs = [out] if batch == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(batch)]
    for path in outs:
        check_output(path)
    if sheet is not None:
        check_output(sheet, image=True)
    return outs


def _run(args, input_path: Path | None = None) -> int:
    import numpy as np
    from tqdm import tqdm

    from arvid.pipeline import Arvid, join_input
    from arvid.video import clips_sheet, read_video, write_video

    labels, settings = _request(args)
    outs = _outputs(args.out, args.batch, args.sheet)
    model = Arvid.from_pretrained(args.model, device=args.device, threads=args.threads)
    sampling = model.sampling(labels, **settings)
    model.check(sampling, labels, args.batch)  # against this model, before the input is read or a bar starts
    video = read_video(input_path) if input_path is not None else None
    prepared = model.prepare(video.frames, args.batch) if video is not None else None
    for note in prepared.notes if prepared else []:
        print(f"arvid: {note}", file=sys.stderr)
    frames, start = [], time.perf_counter()
    stream = model.stream(args.frames, prepared, seed=args.seed, labels=labels, batch=args.batch, sampling=sampling)
    with tqdm(total=args.frames, unit="frame", desc="generating", file=sys.stderr, dynamic_ncols=True) as bar:
        for f in stream:
            frames.append(f)
            bar.update(1)
    clip = np.stack(frames, axis=1)  # (B, N, H, W, C)
    if prepared is not None:
        clip = join_input(prepared, clip)
    fps = args.fps or (video.fps if video is not None else None) or model.fps
    for out, c in zip(outs, clip):
        write_video(out, c, fps=fps)
    if args.sheet is not None:
        clips_sheet(list(clip), args.sheet, titles=[o.name for o in outs])
    elapsed = time.perf_counter() - start
    where = outs[0] if len(outs) == 1 else f"{outs[0]} ... {outs[-1]}"
    print(f"wrote {where}: {clip.shape[1]} frames of {clip.shape[3]}x{clip.shape[2]} at {fps:g} fps "
          f"({args.frames} generated in {elapsed:.1f} s, {args.frames * args.batch / elapsed:.1f} frames/s)"
          + (f"; contact sheet {args.sheet}" if args.sheet else ""))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    return _run(args)


def run_extend(args: argparse.Namespace) -> int:
    return _run(args, args.input)  # flags, --out and the model are checked before the input is read
