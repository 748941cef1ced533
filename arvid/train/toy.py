"""A tiny regression task: a worked example of `TrainTask`, and `arvid train toy`.

It trains a two-layer MLP to fit a fixed random linear map in seconds on a CPU, which makes it
the quickest check that a setup works (GPUs, bf16, `torchrun` across processes or nodes, resume)
before an hour-long run, and the task the engine's own tests train.

Sample `g` of step `s` is drawn from a generator seeded by (seed, s, g), where g counts samples
across processes (`rank * batch_size + j`): one process with batch 2B sees exactly the samples
that two processes with batch B see together, so single-process and DDP runs can be compared.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arvid.errors import ArvidError

if TYPE_CHECKING:  # torch loads when the task runs: `arvid train toy --help` answers without it
    import torch
    from torch import nn


@dataclass
class ToyTask:
    dim: int = 8
    hidden: int = 32
    dropout: float = 0.0
    data_seed: int = 1234
    kind: str = "toy"

    def build_model(self) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(self.dim, self.hidden), nn.GELU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, self.dim))

    def model_config(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "dropout": self.dropout}

    def target(self) -> torch.Tensor:
        import torch

        g = torch.Generator().manual_seed(self.data_seed)
        return torch.randn(self.dim, self.dim, generator=g) / self.dim**0.5  # (C, C)

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device: torch.device):
        import torch

        xs = []
        for j in range(batch_size):
            index = rank * batch_size + j  # counts samples across processes
            g = torch.Generator().manual_seed(((self.data_seed * 1_000_003 + step) * 1_000_033 + index) % 2**63)
            xs.append(torch.randn(self.dim, generator=g))
        x = torch.stack(xs)  # (B, C)
        return x.to(device), (x @ self.target().T).to(device)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        mse = (model(x).float() - y).pow(2).mean()
        return mse, {"rmse": mse.detach().sqrt().item()}

    def throughput(self, batch) -> dict[str, float]:
        return {"samples": float(batch[0].shape[0])}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("toy task")
    group.add_argument("--dim", type=int, default=ToyTask.dim, help="input and output size (default %(default)s)")
    group.add_argument("--hidden", type=int, default=ToyTask.hidden, help="hidden width (default %(default)s)")
    group.add_argument("--dropout", type=float, default=ToyTask.dropout, help="dropout rate (default %(default)s)")


def task_from_args(args: argparse.Namespace) -> ToyTask:
    if args.dim < 1 or args.hidden < 1 or not 0 <= args.dropout < 1:
        raise ArvidError(f"toy task: --dim {args.dim} and --hidden {args.hidden} must be >= 1, "
                         f"--dropout {args.dropout} in [0, 1)")
    return ToyTask(dim=args.dim, hidden=args.hidden, dropout=args.dropout)


__all__ = ["ToyTask", "add_arguments", "task_from_args"]
