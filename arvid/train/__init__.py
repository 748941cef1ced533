"""Training: the engine shared by every model, and the training task of each model.

    from arvid.train import TrainConfig, train
    from arvid.train.generator import GeneratorTask

A task (`TrainTask`) builds the model and computes the loss of batch (step, rank); `train` runs
AdamW with warmup and cosine decay, bf16 autocast on CUDA, atomic checkpoints, exact resume and
DistributedDataParallel under torchrun. Model folders themselves are `arvid.files`.

Files: trainer.py (the engine's loop), checkpoint.py (training checkpoints: weights, optimizer
state, RNG states), distributed.py (torchrun), rng.py (RNG capture and restore), schedule.py (the
learning-rate schedule); the tasks: tokenizer.py (`arvid train tokenizer`), generator.py
(`arvid train generator`), tokens.py (tokenized clips for the generator), toy.py (a seconds-long
check of a setup).
"""

from arvid.train.checkpoint import latest_checkpoint
from arvid.train.distributed import unwrap
from arvid.train.schedule import lr_factor
from arvid.train.trainer import TrainConfig, TrainTask, build_optimizer, train

__all__ = ["TrainConfig", "TrainTask", "build_optimizer", "latest_checkpoint", "lr_factor", "train", "unwrap"]
