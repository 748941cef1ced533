"""arvid: autoregressive latent-token video generation with fused Triton attention kernels.

Shape legend used across the code base:
    B batch, T frames (pixels), t latent frames, H/W pixel height/width, h/w latent height/width,
    C channels, N tokens, nh attention heads, nh_kv key/value heads, hs head size, S cache slots.
Videos are uint8 numpy arrays (T, H, W, C) at the edges and float tensors (B, C, T, H, W) in
[-1, 1] inside the models.
"""

from arvid.errors import ArvidError

__version__ = "0.1.0"

__all__ = ["ArvidError", "__version__"]
