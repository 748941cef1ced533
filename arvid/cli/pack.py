"""Put a trained tokenizer and a trained generator together into one model folder.

    arvid pack --tokenizer runs/tokenizer-mnist --generator runs/generator-mnist --out my-model
    arvid generate --model my-model --frames 64 --out clip.mp4

The folder holds tokenizer/ and generator/ (model.safetensors + config.json each, no optimizer
state): what `--model PATH` reads (and `Arvid.from_pretrained(PATH)` in Python). The two must belong
together: the generator was trained on this tokenizer's codes (same codebook and latent grid).
With --reader DIR (a label reader: `arvid train reader`), the folder also holds reader/, which scores a
conditional model's candidate pictures by how clearly they show the asked-for labels; it must read the
model's pictures (size, channels) and label classes.
With --sampling FILE, the folder also holds sampling.json: the decoding settings `arvid generate`
uses where its flags leave them unset (some of the settings listed below), for example
{"top_p": 0.9, "guidance": 3.0}. Measure them first: `arvid eval generation` sweeps them.
"""

from __future__ import annotations

import argparse
from pathlib import Path


COMMANDS = {"pack": "join a trained tokenizer and generator into one model folder"}


def register(sub) -> None:
    from arvid.generator.sampling import Sampling

    settings = ", ".join(Sampling.settings())
    p = sub.add_parser("pack", help=COMMANDS["pack"],
                       description=f"{__doc__}\nThe settings a sampling.json may hold: {settings}.", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder or its training run folder")
    p.add_argument("--generator", type=Path, required=True, help="generator folder or its training run folder")
    p.add_argument("--reader", type=Path, default=None,
                   help="label reader folder or its training run folder (`arvid train reader`), written as reader/")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist yet)")
    p.add_argument("--sampling", type=Path, default=None,
                   help="JSON file of the model's recommended decoding settings, written as sampling.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from arvid.errors import ArvidError
    from arvid.generator import Generator, Sampling
    from arvid.pipeline import Arvid
    from arvid.reader import LabelReader
    from arvid.tokenizer import load_tokenizer
    from arvid.utils.atomic import atomic_path, check_target

    if args.out.exists():
        raise ArvidError(f"{args.out} already exists: pack writes a new folder, so remove it or pick another --out")
    check_target(args.out, is_dir=True)  # before loading anything
    sampling = Sampling.read_file(args.sampling) if args.sampling is not None else None
    reader = LabelReader.from_pretrained(args.reader) if args.reader is not None else None
    model = Arvid(load_tokenizer(args.tokenizer), Generator.from_pretrained(args.generator), "cpu", sampling,
                  reader=reader)  # refused unless the reader reads the model's pictures and labels
    with atomic_path(args.out, is_dir=True) as tmp:
        model.save_pretrained(tmp)
    tok, gen = model.tokenizer, model.generator
    params = sum(p.numel() for p in tok.parameters()) + sum(p.numel() for p in gen.parameters())
    h, w = model.resolution
    print(f"arvid: packed {args.out} ({params / 1e6:.1f}M parameters; {w}x{h}, τ={tok.temporal_factor}, "
          f"{tok.codebook_size} codes, window {gen.config.window_frames} latent frames"
          + (f"; sampling {model.recommended}" if model.recommended else "")
          + (f"; a label reader of {reader.config.num_classes} classes" if reader is not None else "") + ")")
    return 0
