"""Split-KV decode attention over a ring-buffer KV cache: Triton kernels, launcher, custom op. In progress."""

import torch


def choose_num_splits(q: torch.Tensor, k_cache: torch.Tensor) -> int:
    return 1


@torch.library.custom_op("arvid::decode_attention", mutates_args=())
def _decode_op(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_pos: torch.Tensor, q_pos: torch.Tensor,
    window: int | None, sinks: int, scale: float, num_splits: int,
) -> torch.Tensor:
    raise NotImplementedError("the Triton decode attention kernel lands shortly; use_backend('pytorch') meanwhile")
