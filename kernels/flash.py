"""Fused flash attention (prefill and training): Triton kernels, launcher, custom op. In progress."""

import os

import torch

KERNELS_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


@torch.library.custom_op("arvid::flash_attention", mutates_args=())
def _flash_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, window: int | None, sinks: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    raise NotImplementedError("the Triton flash attention kernel lands shortly; use_backend('pytorch') meanwhile")
