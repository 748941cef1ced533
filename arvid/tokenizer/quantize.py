"""The quantizer: FSQ (default), LFQ or VQ from vector-quantize-pytorch, always in float32.

The library only switches autocast off for CUDA, and FSQ in bf16 loses about half of its codes
(vector-quantize-pytorch issue 114), so this wrapper turns autocast off on whatever device the
latent is on and quantizes a float32 copy. The latent arrives with exactly the quantizer's
dimension (the encoder's last convolution is the projection), so the library adds no projections.

    q = Quantizer(cfg)
    zq, codes, aux = q(z)          # z (B, D, t, h, w) -> zq (B, D, t, h, w) f32, codes (B, t, h, w) int64
    zq = q.codes_to_latent(codes)  # the same zq, rebuilt from the codes
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from arvid.tokenizer.config import TokenizerConfig


def build_library_quantizer(cfg: TokenizerConfig) -> nn.Module:
    from vector_quantize_pytorch import FSQ, LFQ, VectorQuantize

    if cfg.quantizer == "fsq":
        return FSQ(levels=list(cfg.levels))
    if cfg.quantizer == "lfq":
        return LFQ(codebook_size=cfg.num_codes, dim=cfg.latent_dim, entropy_loss_weight=cfg.entropy_weight,
                   commitment_loss_weight=cfg.commitment_weight)
    return VectorQuantize(dim=cfg.vq_dim, codebook_size=cfg.num_codes, decay=cfg.vq_decay, kmeans_init=True,
                          kmeans_iters=10, threshold_ema_dead_code=2, commitment_weight=cfg.commitment_weight,
                          rotation_trick=False)


class Quantizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.kind = cfg.quantizer
        self.dim = cfg.latent_dim
        self.codebook_size = cfg.codebook_size
        self.q = build_library_quantizer(cfg)

    def forward(self, z: torch.Tensor, update: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, t, h, w) -> (zq (B, D, t, h, w) float32, codes (B, t, h, w) int64, aux loss scalar).

        `update=False` freezes a VQ codebook (no EMA step, no dead-code restart) for inference.
        """
        b, _, t, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):
            x = rearrange(z.float(), "b d t h w -> b (t h w) d")
            if self.kind == "fsq":
                zq, codes = self.q(x)
                aux = x.new_zeros(())
            elif self.kind == "lfq":
                zq, codes, aux = self.q(x)
            else:
                zq, codes, aux = self.q(x, freeze_codebook=not update)
            zq = rearrange(zq, "b (t h w) d -> b d t h w", t=t, h=h, w=w)
            codes = rearrange(codes.long(), "b (t h w) -> b t h w", t=t, h=h, w=w)
        return zq, codes, aux.float().reshape(())

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, t, h, w) integers in [0, codebook_size) -> zq (B, D, t, h, w) float32."""
        b, t, h, w = codes.shape
        flat = rearrange(codes.long(), "b t h w -> b (t h w)")
        with torch.autocast(codes.device.type, enabled=False):
            if self.kind == "vq":
                zq = self.q.get_output_from_indices(flat)
            else:
                zq = self.q.indices_to_codes(flat)
        return rearrange(zq.float(), "b (t h w) d -> b d t h w", t=t, h=h, w=w)
