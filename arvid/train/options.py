"""The command-line options of `arvid train tokenizer`, `generator`, `reader` and `layers`, without torch: `arvid
train KIND --help` lists them before torch loads. Each task module (tokenizer.py, generator.py, reader.py, layers.py)
exposes its function as `add_arguments` and turns the parsed options into its task (`task_from_args`); toy.py,
torch-free itself, keeps its own. `TRAIN_DEFAULTS` holds the engine settings a kind trains with unless told otherwise (the others: `TrainConfig`'s).
"""

from __future__ import annotations

import argparse

from arvid.generator.config import DECODINGS, PRESETS as GENERATOR_PRESETS
from arvid.tokenizer.config import PRESETS as TOKENIZER_PRESETS, QUANTIZERS

TRAIN_PARTS = ("all", "decoder")  # what `--train-part` may train of a tokenizer

# kind -> TrainConfig fields it defaults otherwise: the label reader and the layer splitter are small and learn fast,
# at a high rate
TRAIN_DEFAULTS = {
    "reader": {"steps": 5000, "batch_size": 64, "lr": 2e-3, "warmup_steps": 100, "ckpt_every": 1000, "seed": 7},
    "layers": {"steps": 800, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50, "ckpt_every": 200},
}

MODEL_FLAGS = {  # flag -> GeneratorConfig field
    "n_layer": "n_layer", "n_head": "n_head", "n_kv_head": "n_kv_head", "d_model": "d_model",
    "mlp_hidden": "mlp_hidden", "window": "window_frames", "sinks": "sink_frames",
}


def tokenizer_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("tokenizer")
    g.add_argument("--dataset", default="moving-mnist", help="moving-mnist, shapes or folder (default moving-mnist)")
    g.add_argument("--data-path", default=None, help="folder of videos, for --dataset folder")
    g.add_argument("--frames", type=int, default=9,
                   help=f"frames per training clip: 1 + k·τ, {_frame_rule()} (default 9; the model is convolutional, "
                        "any valid length works later)")
    g.add_argument("--size", type=int, default=64,
                   help=f"frame height and width in pixels: a multiple of the spatial factor, {_size_rule()}; "
                        "moving-mnist needs at least 28 (default 64)")
    g.add_argument("--preset", default="mnist", choices=sorted(TOKENIZER_PRESETS), help="model preset the options below modify (default mnist)")
    g.add_argument("--tau", type=int, default=None, help="temporal factor τ: 1, 2 or 4 (default: the preset's)")
    g.add_argument("--spatial-factor", type=int, default=None, help="4, 8 or 16 (default: the preset's)")
    g.add_argument("--quantizer", default=None, choices=QUANTIZERS, help="fsq, lfq or vq (default: the preset's)")
    g.add_argument("--levels", default=None, help="FSQ levels, comma-separated, e.g. 8,6,5 (codebook = product)")
    g.add_argument("--num-codes", type=int, default=None, help="LFQ/VQ codebook size (LFQ: a power of two)")
    g.add_argument("--width", type=int, default=None, help="channels of the first level (default: the preset's)")
    g.add_argument("--max-width", type=int, default=None, help="largest channel count (default: the preset's)")
    g.add_argument("--patch", type=int, default=None, help="pixels folded into channels at the input: 1, 2 or 4")
    g.add_argument("--depth", type=int, default=None, help="residual blocks per resolution level")
    g.add_argument("--latent-depth", type=int, default=None, help="residual blocks at the latent resolution")
    g.add_argument("--temporal-kernel", type=int, default=None,
                   help="causal kernel length in time of the residual blocks, 1 to 7 (1: frame by frame; default: the preset's)")
    g.add_argument("--init", metavar="DIR", default=None,
                   help="start from this trained tokenizer (its weights and architecture; fresh optimizer and schedule)")
    g.add_argument("--train-part", choices=TRAIN_PARTS, default="all",
                   help="with --init: 'decoder' freezes the encoder and quantizer, so the codes never change (default all)")
    g.add_argument("--warp", action="store_true",
                   help="decoder renders each frame as a blend of its own prediction and the previous frame moved by "
                        "a predicted flow (motion compensation; with --init it adds this to that tokenizer's decoder)")
    g.add_argument("--context", action="store_true",
                   help="conditional coding: the encoder and decoder of each latent frame also see the decoder's previous "
                        "output frame, so codes carry only what is new (a closed loop, trained latent frame by latent frame)")
    g.add_argument("--l1-weight", type=float, default=None,
                   help="weight of |x - x̂| in the reconstruction loss (default: the preset's, 0.2; 0 trains for MSE, i.e. PSNR)")
    g.add_argument("--l2-weight", type=float, default=None,
                   help="weight of (x - x̂)² in the reconstruction loss (default: the preset's, 1.0)")
    g.add_argument("--eval-every", type=int, default=200,
                   help="steps between evaluations: the PSNR of held-out clips (eval_psnr in the log) and preview.png "
                        "in --out, real clips beside their reconstructions; 0: none (default %(default)s)")
    g.add_argument("--eval-clips", type=int, default=8, help="held-out clips per evaluation (default %(default)s)")
    g.add_argument("--consistency-weight", type=float, default=0.0,
                   help="weight of the loss on |x̂_t - warp(x̂_t-1)| along the real clip's optical flow (Farneback, "
                        "needs OpenCV): the reconstruction must move as the clip moves, without flicker (default 0: off)")



def generator_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (a token dataset, or a tokenizer and a dataset to tokenize once)")
    data.add_argument("--tokens", metavar="DIR", help="token dataset folder for training")
    data.add_argument("--eval-tokens", metavar="DIR", help="token dataset folder of held-out clips")
    data.add_argument("--tokenizer", metavar="PATH", help="trained tokenizer folder: tokenize --dataset into OUT/tokens-*")
    data.add_argument("--dataset", default="moving-mnist", help="dataset to tokenize (default %(default)s)")
    data.add_argument("--data-path", metavar="DIR", help="video folder, for --dataset folder")
    data.add_argument("--clips", type=int, default=4000, help="training clips to tokenize (default %(default)s)")
    data.add_argument("--eval-clips", type=int, default=256, help="held-out clips to tokenize (default %(default)s)")
    data.add_argument("--clip-frames", type=int, default=33,
                      help="frames per tokenized clip: 1 + k·τ of the tokenizer (τ 2: an odd number; τ 4: 5, 9, 13, ...), "
                           "giving at least --train-frames latent frames (default %(default)s)")
    data.add_argument("--size", type=int, default=64,
                      help="frame size of tokenized clips: a multiple of the tokenizer's spatial factor (default %(default)s)")

    model = parser.add_argument_group("generator model (vocabulary, frame and labels come from the data)")
    model.add_argument("--preset", default="mnist", choices=list(GENERATOR_PRESETS), help="architecture preset (default %(default)s)")
    for flag, name in MODEL_FLAGS.items():
        model.add_argument(f"--{flag.replace('_', '-')}", type=int, dest=flag, metavar="N",
                           help=f"override the preset's {name}")
    model.add_argument("--no-labels", action="store_true", help="train unconditionally even when clips have labels")
    model.add_argument("--decoding", choices=DECODINGS, default=None,
                       help="raster: a frame's tokens one at a time; masked: a frame's tokens together, by iterative "
                            "masked decoding (default raster, or --init's; --init may give raster weights to a "
                            "masked run: the parameters are the same)")

    run = parser.add_argument_group("generator training")
    run.add_argument("--train-frames", type=int, default=0,
                     help="latent frames per training window (default: whole clips); at least window + sinks + 2, so "
                          f"training shows the sink frames at the distance they keep in long clips: {_train_frames_rule()}")
    run.add_argument("--label-dropout", type=float, default=0.1,
                     help="probability of training a clip without its labels, for guidance (default %(default)s)")
    run.add_argument("--init", metavar="DIR", default=None,
                     help="start from this trained generator (its weights and architecture; fresh optimizer and schedule)")
    run.add_argument("--eval-every", type=int, default=200,
                     help="steps between evaluations: bits per token of held-out windows (eval_bits_per_token in the "
                          "log) and preview.png in --out, real clips beside the model's continuations of their first "
                          "latent frame (default %(default)s)")
    run.add_argument("--eval-windows", type=int, default=64, help="held-out windows per evaluation (default %(default)s)")


def reader_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (frames of a labelled dataset's train split; held-out frames of its eval split)")
    data.add_argument("--dataset", default="moving-mnist",
                      help="moving-mnist, shapes, or folder with one subfolder per class (default %(default)s)")
    data.add_argument("--data-path", metavar="DIR", default=None, help="folder of videos, for --dataset folder")
    data.add_argument("--size", type=int, default=64,
                      help="picture height and width in pixels: the size of the pictures it will read (default %(default)s)")
    data.add_argument("--clip-frames", type=int, default=20, help="frames of each clip drawn from (default %(default)s)")
    data.add_argument("--frames-per-clip", type=int, default=4,
                      help="random frames a batch takes from each clip (default %(default)s)")

    model = parser.add_argument_group("reader model")
    model.add_argument("--width", type=int, default=16,
                       help="channels of the first convolutions; 16, half the evaluation's judge (default %(default)s)")
    model.add_argument("--downsample", type=int, default=2,
                       help="average-pool the picture by this first (default %(default)s)")

    run = parser.add_argument_group("reader evaluation")
    run.add_argument("--eval-every", type=int, default=500,
                     help="steps between evaluations: the share of held-out frames whose most likely classes are "
                          "exactly their labels (eval_accuracy in the log); 0: at the end only (default %(default)s)")
    run.add_argument("--eval-frames", type=int, default=1024, help="held-out frames per evaluation (default %(default)s)")


def layers_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("the layered tokenizer (its reference coder from --reference; composites of "
                                     "train digits to learn from)")
    data.add_argument("--reference", metavar="DIR", default=None,
                      help="tokenizer folder whose coder codes the reference picture: a one-channel conv tokenizer "
                           "(e.g. one trained with `arvid train tokenizer --frames 1`), or a layered tokenizer, whose "
                           "reference coder and encoder settings are kept (required)")
    data.add_argument("--dataset", default="moving-mnist",
                      help="what the frames are composites of: moving-mnist, its train digits (default %(default)s)")
    data.add_argument("--size", type=int, default=64,
                      help="frame height and width in pixels: a multiple of 8 and of the reference coder's spatial "
                           "factor, at least 28 (default %(default)s)")
    data.add_argument("--layers", type=int, default=2,
                      help="layers (objects) a reference is cut into, 2 to 4 (default %(default)s)")

    run = parser.add_argument_group("layer splitter evaluation")
    run.add_argument("--eval-every", type=int, default=200,
                     help="steps between evaluations: the share of the ink of held-out composites (decoded by the "
                          "reference coder) given to the right layer (eval_ink_accuracy; eval_touching_accuracy over "
                          "those whose ink is one piece); 0: at the end only (default %(default)s)")
    run.add_argument("--eval-frames", type=int, default=512, help="held-out composites per evaluation (default %(default)s)")


def train_frames_minimum(window: int, sinks: int) -> int:
    """The fewest latent frames a training window may have: window + sinks + 2 (any number without sinks)."""
    return window + sinks + 2 if sinks else 1


def _train_frames_rule() -> str:
    """The minimum of --train-frames for each preset, as --help states it."""
    by: dict[str, list[str]] = {}
    for name, c in GENERATOR_PRESETS.items():
        key = f"{train_frames_minimum(c.window_frames, c.sink_frames)} (window {c.window_frames} + sinks {c.sink_frames} + 2)"
        by.setdefault(key, []).append(name)
    return "; ".join(f"{k} for preset {' and '.join(v)}" for k, v in by.items()) + ", else from --window and --sinks"


def _frame_rule() -> str:
    """The valid --frames of each tokenizer preset."""
    by: dict[int, list[str]] = {}
    for name, p in TOKENIZER_PRESETS.items():
        by.setdefault(p["temporal_factor"], []).append(name)
    return "; ".join(f"with τ {t} ({', '.join(v)}): {', '.join(str(1 + k * t) for k in range(1, 5))}, ..."
                     for t, v in sorted(by.items()))


def _size_rule() -> str:
    by: dict[int, list[str]] = {}
    for name, p in TOKENIZER_PRESETS.items():
        by.setdefault(p["spatial_factor"], []).append(name)
    return "; ".join(f"{s} for {', '.join(v)}" for s, v in sorted(by.items()))


def add_task_arguments(kind: str, parser: argparse.ArgumentParser) -> None:
    """The options of `arvid train KIND`, with torch not yet imported."""
    if kind == "toy":
        from arvid.train.toy import add_arguments
    else:
        add_arguments = {"tokenizer": tokenizer_arguments, "generator": generator_arguments,
                         "reader": reader_arguments, "layers": layers_arguments}[kind]
    add_arguments(parser)


__all__ = ["MODEL_FLAGS", "TRAIN_DEFAULTS", "TRAIN_PARTS", "add_task_arguments", "train_frames_minimum",
           "generator_arguments", "layers_arguments", "reader_arguments", "tokenizer_arguments"]
