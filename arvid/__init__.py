"""arvid: autoregressive latent-token video generation with fused Triton attention kernels.

Shape legend used across the code base:
    B batch, T frames (pixels), t latent frames, H/W pixel height/width, h/w latent height/width,
    C channels, N tokens, nh attention heads, nh_kv key/value heads, hs head size, S cache slots.
Videos are uint8 numpy arrays (T, H, W, C) at the edges and float tensors (B, C, T, H, W) in
[-1, 1] inside the models.
"""

from arvid.errors import ArvidError, ArvidNotice
from arvid.version import __version__

__all__ = ["Arvid", "ArvidError", "ArvidNotice", "Sampling", "__version__"]


def __getattr__(name: str):
    # `Arvid` and `Sampling` import torch: load them on first use so `arvid --help` stays fast
    if name == "Arvid":
        from arvid.pipeline import Arvid

        return Arvid
    if name == "Sampling":
        from arvid.generator.sampling import Sampling

        return Sampling
    raise AttributeError(f"module 'arvid' has no attribute {name!r}")
