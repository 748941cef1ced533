"""The video tokenizer: causal 3D-conv encoder, FSQ/LFQ/VQ quantizer, causal 3D-conv decoder.

    from arvid.tokenizer import Tokenizer, TokenizerConfig
    tok = Tokenizer(TokenizerConfig.preset("mnist"))     # or Tokenizer.from_pretrained(folder)
    codes = tok.encode(video)    # (B, C, T, H, W) in [-1, 1] -> int64 (B, t, h, w), T = 1 + k·τ
    video = tok.decode(codes)    # -> (B, C, 1 + (t-1)·τ, H, W)
    codes = tok.encode(video, refine=100)  # a context tokenizer's encoder can also search: same bits, closer frames
"""

from arvid.tokenizer.config import PRESETS, TokenizerConfig
from arvid.tokenizer.frames import check_frames, fit_frames, is_valid_frames, latent_frames, pixel_frames
from arvid.tokenizer.model import Tokenizer, tensor_to_video, video_to_tensor

__all__ = ["PRESETS", "Tokenizer", "TokenizerConfig", "check_frames", "fit_frames", "is_valid_frames",
           "latent_frames", "pixel_frames", "tensor_to_video", "video_to_tensor"]
