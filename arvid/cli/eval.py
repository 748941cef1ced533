"""`arvid eval tokenizer MODEL` and `arvid eval generation`: measured quality on held-out clips.

`arvid eval` has one subcommand per thing measured; each is a module-level `register_<kind>(subparsers)`
below: the tokenizer's reconstruction against H.264 at equal bits, and what a whole model generates
(continuation, temporal consistency, long clips; see `arvid.eval.generation`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arvid.cli._common import THREADS_HELP, add_sampling_flags, flag, given, set_threads

_TOKENIZER_HELP = """\
Reconstruct held-out clips with a tokenizer and print a table: PSNR and SSIM (on uint8 frames),
bits per pixel (tokens x log2(codebook size) / (frames x height x width)), codebook usage (the
fraction of codes that occur) and perplexity (exp of the entropy of the code histogram), and the
same clips through H.264 (libx264, preset veryslow, tune psnr; grayscale as 4:0:0) at the highest
CRF that still spends at least the tokenizer's bits on each clip (packet bytes only, without the
SEI messages x264 adds). Clips are indices 0..CLIPS-1 of the dataset's eval split: for Moving MNIST,
digits 4000-4999 that training never sees; for a folder of videos, the files held out from training
(about a tenth, chosen by their path). A folder of fewer than 3 videos holds none out: its clips then
come from the training files, and the table says they are not held out.
"""


COMMANDS = {"eval": "measure a tokenizer (against H.264) or what a model generates, on held-out clips"}


def register(sub) -> None:
    p = sub.add_parser("eval", help=COMMANDS["eval"],
                       description="Evaluate a trained model on held-out clips. Run `arvid eval KIND --help`.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    register_tokenizer(kinds)
    register_generation(kinds)
    p.set_defaults(func=lambda args: args.kind_func(args))


def register_tokenizer(kinds) -> None:
    p = kinds.add_parser("tokenizer", help="PSNR, SSIM, bpp, codebook usage vs H.264 at equal bits",
                         description=_TOKENIZER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="tokenizer folder (model.safetensors + config.json) or training run folder")
    p.add_argument("--dataset", default=None,
                   help="moving-mnist, shapes or folder (default: the dataset the model was trained on)")
    p.add_argument("--data-path", "--path", dest="path", type=Path, default=None,
                   help="the folder of videos, for --dataset folder")
    p.add_argument("--split", choices=("train", "eval"), default="eval", help="default eval (held out)")
    p.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per clip, 1 + k·τ (a layered tokenizer: k·τ) (default 17, or the longest that fits 17)")
    p.add_argument("--size", type=int, default=None, help="frame size in pixels (default: the training size, else 64)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer batch (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="context tokenizers: encode with STEPS steps of encoder-side search per latent frame "
                        "(as `arvid tokenize --refine`; the bits and the decoder stay the same). Default 0")
    p.add_argument("--no-h264", action="store_true", help="skip the H.264 comparison")
    p.add_argument("--h264-preset", default="veryslow", help="libx264 preset (default veryslow)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("--rd-plot", type=Path, default=None, metavar="PNG",
                   help="also plot H.264's rate-distortion curve (PSNR and SSIM against bpp) with the tokenizer's point")
    p.add_argument("--rd-crfs", default="30,36,42,46,48,50,51", help="CRFs of that curve (default %(default)s)")
    p.set_defaults(kind_func=run_tokenizer)


def run_tokenizer(args: argparse.Namespace) -> int:
    from arvid.data import make_dataset
    from arvid.errors import ArvidError
    from arvid.tokenizer import check_frames, load_tokenizer, longest_prefix
    from arvid.eval.tokenizer import evaluate_tokenizer, h264_curve, rd_plot
    from arvid.utils.atomic import atomic_write_text, check_target

    if args.clips < 1 or args.batch_size < 1:
        raise ArvidError(f"--clips and --batch-size must be at least 1, got {args.clips} and {args.batch_size}")
    crfs: tuple[int, ...] = ()
    if args.rd_plot is not None:
        try:
            crfs = tuple(sorted({int(c) for c in args.rd_crfs.split(",") if c.strip()}))
        except ValueError:
            raise ArvidError(f"--rd-crfs takes comma-separated integers such as 36,46,51, got {args.rd_crfs!r}") from None
        if not crfs or not all(0 <= c <= 51 for c in crfs):
            raise ArvidError(f"--rd-crfs must be CRFs in [0, 51], got {args.rd_crfs!r}")
        if args.rd_plot.suffix.lower() != ".png":
            raise ArvidError(f"--rd-plot writes a PNG: give a path ending in .png, got {args.rd_plot}")
        check_target(args.rd_plot)
    if args.json is not None:
        check_target(args.json)
    tok = load_tokenizer(args.model, device=args.device)
    if args.frames is None:
        args.frames = longest_prefix(17, tok.temporal_factor, tok.first_frames) or tok.temporal_factor
    check_frames(args.frames, tok.temporal_factor, what="--frames", first=tok.first_frames)
    try:
        tok.check_refine(args.refine)
    except ArvidError as e:
        raise ArvidError(f"--refine: {e}") from None
    notes = tok.config.notes
    dataset = args.dataset or notes.get("dataset") or "moving-mnist"
    size = args.size or notes.get("size") or 64
    extra = {"channels": tok.config.channels} if dataset == "folder" else {}
    ds = make_dataset(dataset, frames=args.frames, size=size, split=args.split, seed=args.seed, path=args.path, **extra)
    ds[0]  # clips too long for the videos are refused in one line, before anything is printed
    if hasattr(ds, "notice"):
        print(f"arvid: {ds.notice()}")
    report = evaluate_tokenizer(tok, ds, clips=args.clips, batch_size=args.batch_size, h264=not args.no_h264,
                                preset=args.h264_preset, progress=True, refine=args.refine)
    refined = f", encoded with {args.refine} refinement steps per latent frame" if args.refine else ""
    print(f"{dataset} ({args.split} split), tokenizer {args.model}: τ={tok.temporal_factor}, "
          f"spatial {tok.spatial_factor}, {tok.config.quantizer} with {tok.codebook_size} codes{refined}")
    print(report.table())
    curve = h264_curve(ds, args.clips, crfs, preset=args.h264_preset, progress=True) if crfs else []
    if crfs:
        print("H.264 curve: " + "; ".join(f"crf {r['crf']}: {r['bpp']:.4f} bpp, {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}"
                                         for r in curve))
        rd_plot(args.rd_plot, curve, report, f"arvid tokenizer ({args.model}{f', --refine {args.refine}' if args.refine else ''})")
        print(f"wrote {args.rd_plot}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({"model": str(args.model), "dataset": dataset, "split": args.split,
                                                 "held_out": ds.is_held_out,
                                                 "refine": args.refine,
                                                 **report.to_dict(), "h264_curve": curve}, indent=2) + "\n")
    return 0


_GENERATION_HELP = """\
Measure what a model (a tokenizer and a generator) generates, on held-out clips of its own kind of
data, and write a report folder: report.md (tables, the acceptance checks of the default model,
timings), figures.json and PNG plots and contact sheets.

The clips: --dataset at the model's size and colour (default: the dataset the model was trained on,
else moving-mnist). Moving MNIST: digits 4000-4999 and seeds training never used; shapes: seeds
training never used; folder (--data-path DIR): the files held out from training (about a tenth,
chosen by their path). A folder of fewer than 3 videos holds none out: its clips then come from the
training files, and the report says so. Clips' labels are given to models that take them.

  continuation   CONTEXT frames given, PREDICT generated: per-frame MSE (sum over the frame, pixels
                 in [0, 1]), PSNR and SSIM, greedy and sampled, against copying the last given frame
                 and against the tokenizer's reconstruction of the truth (the floor)
  consistency    warping error under Farneback optical flow: real clips, generated clips, and the
                 same weights sampling each latent frame on its own (no temporal context)
  long clips     Moving MNIST models only: LONG_CLIPS clips of LONG_FRAMES frames, streamed in
                 constant memory; intensity and digit blobs per 64-frame block against real clips;
                 the collapse rate
  tokenizer      the `arvid eval tokenizer` table (skip with --tokenizer-clips 0)

The digit measures (labels shown, identity switches, long clips) run for Moving MNIST models
(64x64, 1 channel) only.
"""


def register_generation(kinds) -> None:
    p = kinds.add_parser("generation", help="continuation MSE/SSIM, warping error, long-clip collapse rate",
                         description=_GENERATION_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default model)")
    p.add_argument("--out", type=Path, required=True, help="report folder to write")
    p.add_argument("--dataset", choices=("moving-mnist", "shapes", "folder"), default=None,
                   help="the clips to measure against (default: the dataset the model was trained on, else moving-mnist)")
    p.add_argument("--data-path", type=Path, default=None, metavar="DIR",
                   help="the folder of videos, for --dataset folder (its held-out files are measured)")
    p.add_argument("--clips", type=int, default=64, help="continuation and consistency clips (default 64)")
    p.add_argument("--context", type=int, default=10, help="frames given (default 10)")
    p.add_argument("--predict", type=int, default=10, help="frames predicted (default 10)")
    p.add_argument("--frames", type=int, default=32, help="frames per consistency clip (default 32)")
    p.add_argument("--long-clips", type=int, default=16, help="long clips, 0 to skip (default 16)")
    p.add_argument("--long-frames", type=int, default=1024, help="frames per long clip (default 1024)")
    add_sampling_flags(p.add_argument_group("decoding of the sampled clips (as `arvid generate`)"))
    p.add_argument("--sweep", default="0,0.3,0.5,0.7",
                   help="more sampling temperatures for the consistency sweep, comma-separated, '' to skip "
                        "(default 0,0.3,0.5,0.7; 0 is greedy)")
    p.add_argument("--guidance-sweep", default="1,5",
                   help="more guidance scales for the consistency sweep, comma-separated, '' to skip (default 1,5; 1 is off)")
    p.add_argument("--reader-steps", type=int, default=1200,
                   help="training steps of the digit reader that measures label fidelity, 0 to skip (default 1200)")
    p.add_argument("--tokenizer-clips", type=int, default=200, help="clips for the tokenizer table, 0 to skip")
    p.add_argument("--batch", type=int, default=32, help="clips generated at once (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of clips and sampling (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.set_defaults(kind_func=run_generation)


def _floats(text: str, flag: str, example: str, lo: float, hi: float) -> tuple[float, ...]:
    from arvid.errors import ArvidError

    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ArvidError(f"{flag} takes comma-separated {example}, got {text!r}") from None
    if any(not lo <= v <= hi for v in values):
        raise ArvidError(f"{flag} values must lie in [{lo:g}, {hi:g}], got {text!r}")
    return values


def run_generation(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from arvid.errors import ArvidError
    from arvid.eval.generation import Settings, data_for, eval_dataset, evaluate_generation, write_report
    from arvid.generator.sampling import Sampling
    from arvid.pipeline import Arvid
    from arvid.utils import check_target
    from arvid.utils.atomic import refuse_foreign_folder

    for name in ("clips", "context", "predict", "batch"):
        if getattr(args, name) < 1:
            raise ArvidError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.frames < 2 or args.long_clips < 0 or args.tokenizer_clips < 0:
        raise ArvidError("--frames must be at least 2, --long-clips and --tokenizer-clips at least 0")
    if args.long_clips and args.long_frames < 64:
        raise ArvidError(f"--long-frames must be at least 64 (one block), got {args.long_frames}")
    Sampling.build(given(args), name=flag)  # the ranges generate and the sampler use, in the flags' own names
    sweep = _floats(args.sweep, "--sweep", "temperatures such as 0,0.5", 0, 10)
    guidance_sweep = _floats(args.guidance_sweep, "--guidance-sweep", "guidance scales such as 1,5", 0, 100)
    if args.reader_steps < 0:
        raise ArvidError(f"--reader-steps must be at least 0, got {args.reader_steps}")
    check_target(args.out, is_dir=True)
    refuse_foreign_folder(args.out, "figures.json", ("settings",), "arvid eval generation")
    set_threads(args.threads)
    if args.data_path is not None and not args.data_path.is_dir():
        raise ArvidError(f"--data-path {args.data_path} is not a folder: give the folder of videos")
    model = Arvid.from_pretrained(args.model, device=args.device, threads=args.threads)
    trained_on = model.tokenizer.config.notes.get("dataset")
    dataset = args.dataset or ("folder" if args.data_path is not None else None) or (
        trained_on if trained_on in ("moving-mnist", "shapes", "folder") else "moving-mnist")
    if dataset == "folder" and args.data_path is None:
        raise ArvidError("measuring on a folder of videos needs --data-path DIR (the folder the model was trained on: "
                         "its held-out files are measured)")
    if dataset != "folder" and args.data_path is not None:
        raise ArvidError(f"--data-path is for --dataset folder; {dataset} clips are generated")
    data = data_for(model, dataset, args.data_path)  # a folder without videos, or clips of another colour: now
    eval_dataset(model, dataset, args.data_path, max(args.context + args.predict, args.frames))[0]  # videos too short
    if data.notice:
        print(f"arvid: {data.notice}")
    # the decoding users get, with labels where the clips give them: what is not given is the model's recommended
    # setting (sampling.json)
    sampling = Sampling.build(given(args), model.recommended, labels=data.labelled)
    st = Settings(clips=args.clips, context=args.context, predict=args.predict, consistency_frames=args.frames,
                  long_clips=args.long_clips, long_frames=args.long_frames, seed=args.seed, sampling=sampling,
                  batch=args.batch, tokenizer_clips=args.tokenizer_clips, sweep=sweep, guidance_sweep=guidance_sweep,
                  reader_steps=args.reader_steps, dataset=dataset,
                  data_path=None if args.data_path is None else str(args.data_path))
    command = "arvid " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""
    report = evaluate_generation(model, st, command=command or "arvid eval generation", data=data)
    paths = write_report(report, args.out)
    for name, ok, detail in report.checks():
        print(f"{'pass' if ok else 'FAIL'}  {name}: {detail}")
    print(f"wrote {paths[0]} (with {len(paths) - 1} more files in {args.out})")
    return 0
