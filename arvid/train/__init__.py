"""Training: the engine shared by every model, and the training task of each model.

    from arvid.train import TrainConfig, train
    from arvid.train.generator import GeneratorTask

A task (`TrainTask`) builds the model and computes the loss of batch (step, rank); `train` runs
AdamW with warmup and cosine decay, bf16 autocast on CUDA, atomic checkpoints, exact resume and
DistributedDataParallel under torchrun. Model folders themselves are `arvid.files`.

Files: config.py (the engine's settings, `TrainConfig`), trainer.py (the engine's loop), checkpoint.py
(training checkpoints: weights, optimizer state, RNG states), distributed.py (torchrun), rng.py (RNG capture
and restore), schedule.py (the learning-rate schedule); the tasks: options.py (the command-line options of
the tokenizer, generator and reader tasks), tokenizer.py (`arvid train tokenizer`), generator.py (`arvid train
generator`), tokens.py (tokenized clips for the generator), reader.py (`arvid train reader`), toy.py (a
seconds-long check of a setup).
"""

from __future__ import annotations

# Loaded on first use: the settings (config.py) and the tasks' options (options.py) need no torch, so
# `arvid train KIND --help` lists them without importing it.
_TRAINER = ("TrainTask", "build_optimizer", "train")

__all__ = ["TrainConfig", "TrainTask", "build_optimizer", "latest_checkpoint", "lr_factor", "train", "unwrap"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from arvid.train import config as module
    elif name in _TRAINER:
        from arvid.train import trainer as module
    elif name == "latest_checkpoint":
        from arvid.train import checkpoint as module
    elif name == "lr_factor":
        from arvid.train import schedule as module
    elif name == "unwrap":
        from arvid.train import distributed as module
    else:
        raise AttributeError(f"module 'arvid.train' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
