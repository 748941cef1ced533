"""arvid's training engine, shared by the tokenizer and the generator.

    from arvid.train import TrainConfig, TrainTask, train, save_model, load_model_files

A task (`TrainTask`) builds the model and computes the loss of batch (step, rank); `train` runs
AdamW with warmup and cosine decay, bf16 autocast on CUDA, atomic checkpoints, exact resume and
DistributedDataParallel under torchrun. Model folders are `model.safetensors` + `config.json`.
"""

from arvid.train.checkpoint import (
    ModelFiles,
    check_state_dict,
    latest_checkpoint,
    load_model_files,
    load_state,
    save_model,
)
from arvid.train.distributed import unwrap
from arvid.train.schedule import lr_factor
from arvid.train.trainer import TrainConfig, TrainTask, build_optimizer, train

__all__ = [
    "ModelFiles",
    "TrainConfig",
    "TrainTask",
    "build_optimizer",
    "check_state_dict",
    "latest_checkpoint",
    "load_model_files",
    "load_state",
    "lr_factor",
    "save_model",
    "train",
    "unwrap",
]
