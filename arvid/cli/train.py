"""`arvid train KIND ...`: train a tokenizer, a generator or a label reader (or the toy task) with arvid's engine.

Each kind has a task module (`arvid.train.tokenizer`, `arvid.train.generator`, ...), which exposes
`add_arguments(parser)` and `task_from_args(args)`. The options come from torch-free modules
(`arvid.train.options`, `arvid.train.config`), and the task module (and torch) is imported only once
the options are parsed: `arvid --help` and `arvid train KIND --help` stay fast and list every option.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from arvid.cli._common import PARALLEL_THREADS_HELP, set_threads
from arvid.errors import ArvidError
from arvid.train.recipes import KINDS as RECIPE_KINDS, recipe_help, recipe_values

# kind -> module with add_arguments(parser) and task_from_args(args)
TASK_MODULES = {
    "tokenizer": "arvid.train.tokenizer",
    "generator": "arvid.train.generator",
    "reader": "arvid.train.reader",
    "layers": "arvid.train.layers",
    "toy": "arvid.train.toy",
}

_DESCRIPTION = """\
Train a model with arvid's training engine: AdamW with linear warmup and cosine decay, gradient
clipping, bf16 autocast on a GPU, a progress bar with the time left, checkpoints (safetensors weights,
JSON config, optimizer state) written atomically every --ckpt-every steps, every --ckpt-minutes minutes
and at the end, and --resume that continues a stopped or killed run exactly where its last checkpoint
left it. Ctrl-C, SIGTERM or SIGHUP finish the step in progress, save a checkpoint and say how to resume.

kinds:
  tokenizer   the causal 3D-conv VQ video tokenizer
  generator   the transformer over tokenized clips
  reader      the label reader: which labels a picture shows, to pick among a model's reference pictures
  layers      the layer splitter of a layered tokenizer, around a trained reference coder: the run folder
              is a layered tokenizer folder
  toy         a tiny regression task that trains in seconds: checks a setup (GPU, torchrun)
  plot        the curves of a run: `arvid train plot RUN` prints its log as a table and draws curves.png

While it trains, the run folder holds log.csv (the losses and evaluation figures of every logged step;
TensorBoard event files in tensorboard/ too when the tensorboard package is installed) and, after
each evaluation, preview.png: held-out clips beside the model's reconstructions or continuations.

`--recipe cpu-hour` (tokenizer and generator) sets the model size, clip length, steps and checkpoint
interval for a small model in about an hour on 2 CPU cores; `--recipe gpu` for one GPU.

`--resume` continues the run in --out with the options it was started with (kept in its checkpoint):
give only --out and --resume, and --steps to extend the schedule; an option given that differs from the
run's is refused by name.

Run `arvid train KIND --help` for every option of a kind. On several GPUs or nodes, launch with
torchrun, e.g. `torchrun --nproc_per_node 8 -m arvid train generator ...` (--batch-size is per
process); every process must see the same --out folder.
"""


COMMANDS = {"train": "train a tokenizer, a generator or a label reader on a dataset or your own videos"}


# what `arvid train KIND --help` says above the options, for the people who train
KIND_HELP = {
    "tokenizer": """\
Train the video tokenizer: the causal 3D-convolution autoencoder that turns frames into discrete codes
and codes back into frames.

    arvid train tokenizer --out runs/tok --dataset moving-mnist --frames 9 --steps 2000
    arvid train tokenizer --out runs/tok --dataset folder --data-path VIDEOS --recipe cpu-hour

The loss is l1_weight·|x̂ - x| + l2_weight·(x̂ - x)² plus the quantizer's own terms; the progress bar
shows it with PSNR and the share of codes in use. --consistency-weight W also charges flicker: each
reconstructed frame is compared with the one before it, moved along the real clip's optical flow.

--init DIR starts from a trained tokenizer (its weights and architecture, a fresh schedule). With
--train-part decoder only the decoder learns: every code stays the same, so code files and generators
made with DIR keep working. --warp gives the decoder motion compensation (each frame blends its own
rendering with the previous frame moved along a flow it predicts). --context trains a conditional coder:
each latent frame is coded against the frame the decoder showed last, so the codes carry what is new.

Every --eval-every steps the PSNR of held-out clips goes into the log (eval_psnr) and OUT/preview.png
shows those clips above their reconstructions. OUT/log.csv holds every logged step; `arvid train plot
OUT` shows it. Ctrl-C (or SIGTERM, SIGHUP) saves a checkpoint at the step reached; --resume continues.
""",
    "generator": """\
Train the generator: the causal transformer that predicts a clip's tokens, on clips coded by a trained
tokenizer.

    arvid train generator --out runs/gen --tokenizer runs/tok --dataset moving-mnist --steps 3000
    arvid train generator --out runs/gen --tokenizer runs/tok --dataset folder --data-path VIDEOS --recipe cpu-hour

The clips are tokenized once into OUT/tokens-train and OUT/tokens-eval, which --resume and later runs
reuse (--tokens and --eval-tokens take such folders). Each step trains on random windows of
--train-frames latent frames; the bar shows the loss in bits per token, and every --eval-every steps the
bits per token of held-out windows, and OUT/preview.png shows held-out clips above the model's
continuations of their first latent frame. --train-frames must be at least window + sinks + 2 (9 for
preset mnist), so training shows the sink frames at the distance they keep in long clips. OUT/log.csv
holds every logged step (`arvid train plot OUT`); Ctrl-C (or SIGTERM, SIGHUP) saves a checkpoint at the
step reached, and --resume continues it.

With probability --label-dropout a clip trains without its labels, which --guidance needs later.
--decoding masked trains a model that decides a latent frame's tokens together in a few steps (MaskGIT):
it learns to fill in frames whose tokens are partly masked. --init DIR starts from a trained generator's
weights, for instance to train it further on more clips or to start a masked model from a raster one.
""",
    "reader": """\
Train the label reader: a small CNN that reads which label classes a picture shows (multi-label: one
sigmoid per class, max-pooled over positions). Put in a model folder as reader/ (`arvid pack --reader`),
it scores a layered model's candidate reference pictures, and the one that shows the asked-for labels
most clearly is kept.

    arvid train reader --out runs/reader --dataset moving-mnist

It learns from --frames-per-clip random frames of each clip of the dataset's train split, with the
clip's labels as targets (binary cross-entropy); the dataset must be labelled. Every --eval-every steps
and at the end, eval_accuracy in the log is the share of held-out frames (the eval split) whose m most
likely classes are exactly their m distinct labels. The defaults train the Moving MNIST reader in under
three minutes on one CPU thread, to about 0.88 of held-out frames read exactly.
""",
    "layers": """\
Make a layered tokenizer: train its layer splitter (LayerNet, a small U-Net that says which object owns
each ink pixel of a reference picture whose objects touch) around the reference coder of --reference,
which is copied in and stays frozen. The run folder is then a layered tokenizer folder.

    arvid train tokenizer --out runs/ref --init runs/tok --train-part decoder --frames 1
    arvid train layers --out runs/layers --reference runs/ref

--reference is a one-channel conv tokenizer (the decoder of one tuned on single frames draws the
reference best), or a layered tokenizer, whose reference coder and encoder settings are kept. The net
learns from composites made the way Moving MNIST frames are: --layers train digits at random places
combined by max, so each ink pixel's owner is known, softened to look like a decoded picture; the loss
is the pixel cross-entropy under the best of the layers! orders of the slots. Every --eval-every steps
and at the end, eval_ink_accuracy in the log is the share of the ink of held-out composites (held-out
digits, coded and decoded by the reference coder) given to the right layer, eval_touching_accuracy the
same over those whose ink is one piece; OUT/preview.png shows them and their layers.
""",
    "toy": """\
Train a two-layer MLP on a fixed random linear map: it finishes in seconds on a CPU, so it checks a setup
(GPUs, bf16, torchrun across processes or nodes, --resume) before an hour-long run.

    arvid train toy --out runs/toy --steps 200
""",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help=COMMANDS["train"], description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=[*TASK_MODULES, "plot"], help="what to train (plot: a run's curves)")
    parser.add_argument("options", nargs=argparse.REMAINDER, metavar="OPTIONS",
                        help="training and model options: see `arvid train KIND --help`")
    parser.set_defaults(func=run)


def add_train_arguments(parser: argparse.ArgumentParser, kind: str | None = None) -> None:
    """The engine's flags; defaults come from TrainConfig, as the kind's TRAIN_DEFAULTS change them."""
    from arvid.train.config import TrainConfig
    from arvid.train.options import TRAIN_DEFAULTS

    d = TrainConfig(out_dir="-", **TRAIN_DEFAULTS.get(kind, {}))
    g = parser.add_argument_group("training")
    g.add_argument("--out", required=True, metavar="DIR", help="run folder: checkpoints and the final model")
    g.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in --out exactly, with the options the run was started with "
                        "(give --steps to extend it)")
    g.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="batch per process (default %(default)s)")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW decay (default %(default)s)")
    g.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warmup steps (default %(default)s)")
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                   help="cosine decays to lr x this (default %(default)s)")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip,
                   help="max gradient norm, 0: off (default %(default)s)")
    g.add_argument("--ckpt-every", type=int, default=d.ckpt_every,
                   help="steps between checkpoints, at least 1 (default %(default)s)")
    g.add_argument("--ckpt-minutes", type=float, default=None, metavar="M",
                   help="also write a checkpoint whenever M minutes have passed since the last one, M > 0 "
                        "(default: off)")
    g.add_argument("--log-every", type=int, default=d.log_every, help="steps between bar updates (default %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default %(default)s)")
    g.add_argument("--threads", type=int, default=None, help=PARALLEL_THREADS_HELP)
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=d.bf16,
                   help="bf16 autocast (default: on with CUDA, off on the CPU; on a CPU where `arvid info` "
                   "shows native bf16 it trained the Moving MNIST tokenizer 1.75x faster on 2 Zen 4 cores)")


def config_from_args(args: argparse.Namespace):
    from arvid.train.config import TrainConfig

    return TrainConfig(
        out_dir=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, min_lr_ratio=args.min_lr_ratio,
        grad_clip=args.grad_clip, ckpt_every=args.ckpt_every, ckpt_minutes=args.ckpt_minutes or 0.0,
        log_every=args.log_every, seed=args.seed,
        device=args.device, bf16=args.bf16, resume=args.resume,
        options={k: str(v) if isinstance(v, os.PathLike) else v for k, v in vars(args).items()},
    )


# options a resumed run may change: they do not change what is trained
RESUME_MAY_CHANGE = ("out", "resume", "steps", "device", "threads", "log_every", "ckpt_every", "ckpt_minutes",
                     "eval_every")


def resume_options(parser: argparse.ArgumentParser, argv: list[str], opts: argparse.Namespace) -> argparse.Namespace:
    """With --resume: the options the run in --out was started with, where the command line leaves them out. An
    option given that differs from the run's is refused by name (--steps and the like excepted)."""
    from arvid.train.checkpoint import saved_options

    saved = saved_options(opts.out)
    if saved is None:  # nothing to resume, or a run written before options were kept: as given
        return opts
    given = _given(parser, argv)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    changed = [f"{flags.get(k, k)} {getattr(opts, k)!r} (the run has {v!r})" for k, v in saved.items()
               if k in given and k not in RESUME_MAY_CHANGE and hasattr(opts, k) and getattr(opts, k) != v]
    if changed:
        raise ArvidError(f"--resume continues {opts.out} as it was started; these options differ: {'; '.join(changed)}. "
                         "Drop them (the run's values are used), or give another --out")
    for k, v in saved.items():
        if k not in given and hasattr(opts, k):
            setattr(opts, k, v)
    return opts


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the options present on the command line."""
    defaults = {a.dest: a.default for a in parser._actions}
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for a in parser._actions:
            a.default = defaults[a.dest]


def load_task_module(kind: str):
    name = TASK_MODULES[kind]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):
            raise ArvidError(f"`arvid train {kind}` is not available: module {name} is missing from this install") \
                from None
        raise ArvidError(f"`arvid train {kind}` cannot start: {name} needs module {e.name}, which is not installed") \
            from None
    missing = [f for f in ("add_arguments", "task_from_args") if not callable(getattr(module, f, None))]
    if missing:
        raise ArvidError(f"`arvid train {kind}` is not available: {name} lacks {' and '.join(missing)}")
    return module


def build_kind_parser(kind: str):
    """The parser of `arvid train KIND`, built without torch (the task module loads after parsing)."""
    from arvid.cli._common import Parser
    from arvid.train.options import add_task_arguments

    parser = Parser(prog=f"arvid train {kind}", description=KIND_HELP.get(kind, ""),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser, kind)
    if kind in RECIPE_KINDS:
        parser.add_argument("--recipe", metavar="NAME|FILE.toml", help=recipe_help(kind))
    add_task_arguments(kind, parser)
    return parser


PLOT_HELP = """\
Show the curves of a training run (finished or still training): its log.csv as a table of about a dozen
steps spread over the run, with the loss, the figures, the held-out evaluation's and the learning rate,
and the same curves drawn into a PNG.

    arvid train plot runs/tok                      the table, and runs/tok/curves.png
    arvid train plot runs/gen --out gen.png --rows 20
"""


def build_plot_parser() -> argparse.ArgumentParser:
    from arvid.cli._common import Parser

    parser = Parser(prog="arvid train plot", description=PLOT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help="run folder of `arvid train` (or its log.csv)")
    parser.add_argument("--out", metavar="FILE.png", default=None,
                        help="where to draw the curves (default: RUN/curves.png); an existing file is replaced only "
                             "when arvid drew it")
    parser.add_argument("--rows", type=int, default=12, help="steps the table shows, at least 2 (default %(default)s)")
    parser.add_argument("--no-picture", action="store_true", help="print the table only")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.kind == "plot":
        from arvid.train.plot import plot

        opts = build_plot_parser().parse_args(args.options)
        plot(opts.run, opts.out, opts.rows, picture=not opts.no_picture)
        return 0
    parser = build_kind_parser(args.kind)
    opts = parser.parse_args(args.options)
    if getattr(opts, "recipe", None):  # before --resume, which then puts back the run's own values
        given = _given(parser, args.options)
        for dest, value in recipe_values(opts.recipe, args.kind, parser).items():
            if dest not in given:
                setattr(opts, dest, value)
    if opts.ckpt_minutes is not None and not 0 < opts.ckpt_minutes < float("inf"):
        raise ArvidError(f"--ckpt-minutes must be a number of minutes above 0 (a finite one), got {opts.ckpt_minutes:g}")
    module = load_task_module(args.kind)
    from arvid.train import train
    from arvid.train.checkpoint import sweep_temporaries
    from arvid.train.trainer import check_out_dir

    out = Path(opts.out)
    if not str(opts.out).strip() or (out.exists() and not out.is_dir()):
        raise ArvidError(f"--out {opts.out!r} must name a folder for the run (it is {'empty' if not str(opts.out).strip() else 'a file'})")
    if opts.resume:
        opts = resume_options(parser, args.options, opts)
    check_out_dir(out, opts.resume)  # before a task's data work (the generator tokenizes its dataset first)
    if out.is_dir() and os.environ.get("RANK", "0") == "0":
        sweep_temporaries(out)  # what a killed run left (a half-built token folder), before new data work
    set_threads(opts.threads)
    cfg = config_from_args(opts)
    task = module.task_from_args(opts)
    metrics = train(task, cfg)
    if os.environ.get("RANK", "0") == "0":
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k not in ("lr", "elapsed_s", "left_s"))
        print(f"arvid: trained {args.kind} to step {metrics.get('step', cfg.steps)} ({shown}); model in {cfg.out_dir}")
    return 0
