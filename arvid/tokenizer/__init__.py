"""The video tokenizer: causal 3D-conv encoder, FSQ/LFQ/VQ quantizer, causal 3D-conv decoder.

    from arvid.tokenizer import Tokenizer, TokenizerConfig
    tok = Tokenizer(TokenizerConfig.preset("mnist"))     # or Tokenizer.from_pretrained(folder)
    codes = tok.encode(video)    # (B, C, T, H, W) in [-1, 1] -> int64 (B, t, h, w), T = 1 + k·τ
    video = tok.decode(codes)    # -> (B, C, 1 + (t-1)·τ, H, W)
    tok = load_tokenizer(folder) # any kind: a conv Tokenizer or a LayeredTokenizer (same encode/decode/streams)
    codes = tok.encode(video, refine=100)  # a context tokenizer's encoder can also search: same bits, closer frames

Files: config.py (the typed config and presets), frames.py (the one home of frame-count rules), causal_conv.py
(causal 3D convolutions and their streaming state), layered.py and layers.py (the layered tokenizer: a reference
picture cut into layers, and their positions), load.py (loading either kind), quantize.py (FSQ/LFQ/VQ in float32), warp.py (the decoder's
motion compensation), model.py (encoder, decoder, the tokenizer and its model files), streaming.py (encode and
decode a latent frame at a time), codes.py (code files, .npz). Training lives above, in `arvid.train.tokenizer`;
evaluation in `arvid.eval.tokenizer`.
"""

from __future__ import annotations

# Loaded on first use: the config and the frame rules need no torch, so `arvid train tokenizer --help` builds its
# options without importing it.
_CONFIG = ("PRESETS", "TokenizerConfig")
_FRAMES = ("check_frames", "fit_frames", "is_valid_frames", "longest_prefix", "new_latent_frames", "pixel_frames",
           "tail_start")
_MODEL = ("Tokenizer", "tensor_to_video", "video_to_tensor")
_LAYERED = ("LayeredConfig", "LayeredTokenizer")
_LOAD = ("AnyTokenizer", "load_tokenizer")

__all__ = ["PRESETS", "AnyTokenizer", "LayeredConfig", "LayeredTokenizer", "Tokenizer", "TokenizerConfig",
           "check_frames", "fit_frames", "is_valid_frames", "longest_prefix",
           "load_tokenizer", "new_latent_frames", "pixel_frames", "tail_start", "tensor_to_video", "video_to_tensor"]


def __getattr__(name: str):
    if name in _CONFIG:
        from arvid.tokenizer import config as module
    elif name in _FRAMES:
        from arvid.tokenizer import frames as module
    elif name in _MODEL:
        from arvid.tokenizer import model as module
    elif name in _LAYERED:
        from arvid.tokenizer import layered as module
    elif name in _LOAD:
        from arvid.tokenizer import load as module
    else:
        raise AttributeError(f"module 'arvid.tokenizer' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
