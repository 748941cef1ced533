"""The training engine's settings (`TrainConfig`), without torch: `arvid train KIND --help` shows their defaults
before torch loads. The engine that runs them is trainer.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from arvid.errors import ArvidError


@dataclass
class TrainConfig:
    out_dir: str
    steps: int = 10_000
    batch_size: int = 16  # per process
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0 turns clipping off
    ckpt_every: int = 500
    ckpt_minutes: float = 0.0  # also a checkpoint whenever this many minutes passed since the last (0: off)
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None  # None: bf16 autocast on CUDA only
    resume: bool = False
    options: dict | None = None  # the command line's options, kept in the checkpoint so --resume can reuse them

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0, "warmup_steps": self.warmup_steps >= 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "grad_clip": self.grad_clip >= 0,
            "ckpt_every": self.ckpt_every >= 1, "log_every": self.log_every >= 1,
            "ckpt_minutes": 0 <= self.ckpt_minutes < float("inf"),
            "betas": len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ArvidError(f"invalid training settings: {shown} (counts >= 1, lr > 0, 0 <= min_lr_ratio <= 1, "
                             "0 <= betas < 1, others >= 0)")
