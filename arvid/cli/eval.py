"""`arvid eval tokenizer MODEL`: reconstruction quality and bits against H.264 on held-out clips.

`arvid eval` has one subcommand per model kind (`tokenizer` now, `generation` to come); each is a
module-level `register_<kind>(subparsers)` below.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_TOKENIZER_HELP = """\
Reconstruct held-out clips with a tokenizer and print a table: PSNR and SSIM (on uint8 frames),
bits per pixel (tokens x log2(codebook size) / (frames x height x width)), codebook usage (the
fraction of codes that occur) and perplexity (exp of the entropy of the code histogram), and the
same clips through H.264 (libx264, preset veryslow, tune psnr; grayscale as 4:0:0) at the highest
CRF that still spends at least the tokenizer's bits on each clip (packet bytes only, without the
SEI messages x264 adds). Clips are indices 0..CLIPS-1 of the dataset's eval split: for Moving MNIST,
digits 4000-4999 that training never sees.
"""


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a tokenizer (against H.264) on held-out clips",
                       description="Evaluate a trained model on held-out clips. Run `arvid eval KIND --help`.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    register_tokenizer(kinds)
    p.set_defaults(func=lambda args: args.kind_func(args))


def register_tokenizer(kinds) -> None:
    p = kinds.add_parser("tokenizer", help="PSNR, SSIM, bpp, codebook usage vs H.264 at equal bits",
                         description=_TOKENIZER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="tokenizer folder (model.safetensors + config.json) or training run folder")
    p.add_argument("--dataset", default=None,
                   help="moving-mnist, shapes or folder (default: the dataset the model was trained on)")
    p.add_argument("--path", type=Path, default=None, help="the folder of videos, for --dataset folder")
    p.add_argument("--split", choices=("train", "eval"), default="eval", help="default eval (held out)")
    p.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip, 1 + k·τ (default 17)")
    p.add_argument("--size", type=int, default=None, help="frame size in pixels (default: the training size, else 64)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer batch (default 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-h264", action="store_true", help="skip the H.264 comparison")
    p.add_argument("--h264-preset", default="veryslow", help="libx264 preset (default veryslow)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.set_defaults(kind_func=run_tokenizer)


def run_tokenizer(args: argparse.Namespace) -> int:
    from arvid.data import make_dataset
    from arvid.errors import ArvidError
    from arvid.tokenizer import Tokenizer, check_frames
    from arvid.tokenizer.evaluate import evaluate_tokenizer
    from arvid.utils.atomic import atomic_write_text

    if args.clips < 1 or args.batch_size < 1:
        raise ArvidError(f"--clips and --batch-size must be at least 1, got {args.clips} and {args.batch_size}")
    tok = Tokenizer.from_pretrained(args.model, device=args.device)
    check_frames(args.frames, tok.temporal_factor, what="--frames")
    notes = tok.config.notes
    dataset = args.dataset or notes.get("dataset") or "moving-mnist"
    size = args.size or notes.get("size") or 64
    ds = make_dataset(dataset, frames=args.frames, size=size, split=args.split, seed=args.seed, path=args.path)
    report = evaluate_tokenizer(tok, ds, clips=args.clips, batch_size=args.batch_size, h264=not args.no_h264,
                                preset=args.h264_preset, progress=True)
    print(f"{dataset} ({args.split} split), tokenizer {args.model}: τ={tok.temporal_factor}, "
          f"spatial {tok.spatial_factor}, {tok.config.quantizer} with {tok.codebook_size} codes")
    print(report.table())
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({"model": str(args.model), "dataset": dataset, "split": args.split,
                                                 **report.to_dict()}, indent=2) + "\n")
    return 0
