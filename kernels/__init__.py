"""arvid.kernels: fused Triton attention kernels, their pure-PyTorch references, and the dispatch
between them.

    flash_attention(q, k, v, *, causal, window, sinks, scale)          prefill and training
    decode_attention(q, k_cache, v_cache, cache_pos, q_pos, *, ...)    few queries vs a ring-buffer cache
    attention_reference(q, k, v, *, causal, window, sinks, scale)     float32 reference of flash_attention
    attention_backend(device) -> "triton" | "triton-interpreter" | "pytorch"
    use_backend("auto" | "triton" | "pytorch")                         context manager overriding the choice

Files: flash.py and decode.py hold each kernel (Triton kernel, launcher, custom
op with fake implementation); reference.py the mask rule, references and tolerance rule;
dispatch.py the backend choice; api.py the public functions.
"""

from arvid.kernels.api import decode_attention, flash_attention
from arvid.kernels.checks import AttentionArgumentError
from arvid.kernels.dispatch import attention_backend, use_backend
from arvid.kernels.reference import attention_reference, decode_attention_reference, error_bound

try:  # registers torch.ops.arvid.*; needs triton (Linux x86-64 wheels only)
    from arvid.kernels import decode as _decode  # noqa: F401
    from arvid.kernels import flash as _flash  # noqa: F401
except ImportError:  # no triton: the PyTorch path serves every call
    pass

__all__ = [
    "AttentionArgumentError",
    "attention_backend",
    "attention_reference",
    "decode_attention",
    "decode_attention_reference",
    "error_bound",
    "flash_attention",
    "use_backend",
]
