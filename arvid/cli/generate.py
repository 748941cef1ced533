"""`arvid generate` (a new clip) and `arvid extend INPUT` (continue a clip), with progress and sheets."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from arvid.cli._common import (THREADS_HELP, add_overwrite_flag, add_sampling_flags, check_fps, check_overwrite,
                               check_seed, flag, given)


def _arguments(p: argparse.ArgumentParser, fps_default: str) -> None:
    p.add_argument("--frames", type=int, required=True, help="number of new frames to generate (1 to 10,000,000)")
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
    p.add_argument("--fps", type=float, default=None, help=f"frame rate of the output (default: {fps_default})")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    add_overwrite_flag(p)


COMMANDS = {"generate": "generate a new clip of any length", "extend": "continue an existing video frame by frame"}


def register(sub) -> None:
    g = sub.add_parser(
        "generate", help=COMMANDS["generate"],
        description="Generate a new clip of exactly --frames frames. Long clips roll the KV cache forward "
        "and stream tokens straight into the decoder, so memory stays flat however long the clip is.",
    )
    _arguments(g, "8")
    g.set_defaults(func=run_generate)
    e = sub.add_parser(
        "extend", help=COMMANDS["extend"],
        description="Continue INPUT (any video FFmpeg reads, recognised by its content: mp4, mov, mkv, webm, avi, "
        "mpg, ts, flv, gif, ...; a folder of png/jpg frames, or .npy) by --frames new frames. The input is resized (short side) and centre-cropped to the model's "
        "resolution, tokenized, and its last latent frames prefill the cache. The output is the input's "
        "frames (as fitted to the model) followed by exactly --frames new ones, all of them written in the "
        "output's format: an .mp4, .webm or .gif output encodes the input's frames again (lossy: H.264 at CRF 18 "
        "moves sharp edges by up to about 20 levels), while .npy and png-folder outputs keep them exactly. Gray "
        "clips stay gray in .mp4 (H.264 4:0:0), .npy and png. An input far from the model's training data (colour "
        "into a gray model, much brighter or darker) is said on the terminal, with what to expect.",
    )
    e.add_argument("input", type=Path, help="the video to continue")
    _arguments(e, "the input's, or 8 if it has none")
    e.set_defaults(func=run_extend)


def _request(args) -> tuple[list[int] | None, dict]:
    """The labels and decoding settings the flags give, checked before anything is loaded."""
    from arvid.errors import ArvidError
    from arvid.generator.sampling import Sampling

    labels = None
    if args.label is not None:
        try:
            labels = [int(x) for x in args.label.split(",") if x.strip() != ""]
        except ValueError:
            raise ArvidError(f"--label {args.label!r}: give integers separated by commas, e.g. --label 3,7") from None
        if not labels:
            raise ArvidError(f"--label {args.label!r} names no label: give integers separated by commas, e.g. "
                             "--label 3,7, or leave the flag out for unconditional generation")
    if args.frames < 1:
        raise ArvidError(f"--frames must be a positive number, got {args.frames}")
    if args.batch < 1:
        raise ArvidError(f"--batch must be at least 1, got {args.batch}")
    check_seed(args.seed)
    check_fps(args.fps)
    from arvid.utils.memory import MAX_BATCH, MAX_FRAMES, check_count

    check_count(args.frames, MAX_FRAMES, "--frames")
    check_count(args.batch, MAX_BATCH, "--batch")
    settings = given(args)
    Sampling.build(settings, name=flag)  # ranges, in the flags' own names
    if args.threads is not None:
        from arvid.utils.threads import check

        check(args.threads)
    return labels, settings


def _outputs(out: Path, batch: int, sheet: Path | None, inputs: tuple[Path, ...] = (),
             overwrite: bool = False) -> list[Path]:
    """The output paths, each checked as the writer will check it (and --sheet as a PNG), before any work; none
    may be an input (the same file or folder under another name)."""
    from arvid.utils.atomic import refuse_aliases, refuse_inside
    from arvid.video.io import check_output

    outs = [out] if batch == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(batch)]
    for path in outs:
        check_output(path)
    if sheet is not None:
        check_output(sheet, image=True)
        refuse_inside(sheet, outs, "--sheet")
    refuse_aliases([*outs, *([sheet] if sheet else [])], inputs)
    for path in outs:
        check_overwrite(path, overwrite)
    if sheet is not None:
        check_overwrite(sheet, overwrite, "--sheet")
    return outs


def _run(args, input_path: Path | None = None) -> int:
    import numpy as np
    from tqdm import tqdm

    from arvid.pipeline import Arvid
    from arvid.video import VideoWriter, clip_sheet_frames, clips_sheet
    from arvid.video.io import stream_video

    labels, settings = _request(args)
    outs = _outputs(args.out, args.batch, args.sheet, (input_path,) if input_path is not None else (), args.overwrite)
    model = Arvid.from_pretrained(args.model, device=args.device, threads=args.threads)
    sampling = model.sampling(labels, **settings)
    model.check(sampling, labels, args.batch)  # against this model, before the input is read or a bar starts
    # the input is read as a stream: its frames go to the outputs as they are decoded, and only the frames tokenized
    # together are held, so memory does not grow with its length
    source = stream_video(input_path) if input_path is not None else None
    fps = args.fps or (source.fps if source is not None else None) or model.fps
    given = source.count if source is not None else 0
    total = given + args.frames
    shown = set(clip_sheet_frames(total)) if args.sheet is not None else set()
    kept: list[np.ndarray] = []  # the frames the contact sheet shows: memory does not grow with the clip
    writers = [VideoWriter(out, fps) for out in outs]
    written, start = 0, time.perf_counter()

    def put(frames: np.ndarray) -> None:  # (B, H, W, C): the next frame of every clip
        nonlocal written
        for writer, frame in zip(writers, np.broadcast_to(frames, (len(writers), *frames.shape[1:]))):
            writer.write(frame)
        if written in shown:
            kept.append(np.array(np.broadcast_to(frames, (len(writers), *frames.shape[1:]))))
        written += 1

    prepared = None
    if source is not None:
        try:  # the input's own frames first, as fitted to the model; stopped here, nothing is kept
            prepared = model.prepare_stream(source.frames, source.count, args.batch, put)
        except BaseException:
            for w in writers:
                w.abort()
            raise
        for note in prepared.notes:
            print(f"arvid: {note}", file=sys.stderr)
    stream = model.stream(args.frames, prepared, seed=args.seed, labels=labels, batch=args.batch, sampling=sampling)
    try:
        with tqdm(total=args.frames, unit="frame", desc="generating", file=sys.stderr, dynamic_ncols=True) as bar:
            for frames in stream:
                put(frames)
                bar.update(1)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: keep what was made, a valid shorter video
        done = _close_all(writers)
        where = _where([p for p in done if p is not None])
        counts = sorted({w.frames for w in writers})  # a stop inside a batch: one clip may hold one more
        held = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        made = f" ({given} of the input, the rest generated)" if given else ""
        stop.args = (f"{where} holds the {held} frames made so far{made}" if where else "nothing was written",)
        raise
    except BaseException:
        for w in writers:
            w.abort()
        raise
    _close_all(writers)
    if args.sheet is not None:
        clips = np.stack(kept, axis=1)  # (B, n, H, W, C)
        clips_sheet(list(clips), args.sheet, titles=[o.name for o in outs], numbers=sorted(shown))
    elapsed = time.perf_counter() - start
    h, w = model.resolution
    print(f"wrote {_where(outs)}: {written} frames of {w}x{h} at {fps:g} fps "
          f"({args.frames} generated in {elapsed:.1f} s, {args.frames * args.batch / elapsed:.1f} frames/s)"
          + (f"; contact sheet {args.sheet}" if args.sheet else ""))
    return 0


def _close_all(writers) -> list[Path | None]:
    """Close every writer; if one fails, the others are aborted too (no temporary stays) and the error goes on."""
    try:
        return [w.close() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()  # a closed writer has nothing left to remove
        raise


def _where(paths: list[Path]) -> str:
    return "" if not paths else str(paths[0]) if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"


def run_generate(args: argparse.Namespace) -> int:
    return _run(args)


def run_extend(args: argparse.Namespace) -> int:
    return _run(args, args.input)  # flags, --out and the model are checked before the input is read
