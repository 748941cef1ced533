"""arvid: autoregressive latent-token video generation with fused Triton attention kernels.

Shape legend used across the code base:
    B batch, T frames (pixels), t latent frames, H/W pixel height/width, h/w latent height/width,
    C channels, N tokens, nh attention heads, nh_kv key/value heads, hs head size, S cache slots.
Videos are uint8 numpy arrays (T, H, W, C) at the edges and float tensors (B, C, T, H, W) in
[-1, 1] inside the models.
"""

from arvid.errors import ArvidError

__version__ = "0.1.0"

__all__ = ["Arvid", "ArvidError", "SamplingOptions", "__version__"]


def __getattr__(name: str):
    # `Arvid` and `SamplingOptions` import torch: load them on first use so `arvid --help` stays fast
    if name in ("Arvid", "SamplingOptions"):
        from arvid import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'arvid' has no attribute {name!r}")
