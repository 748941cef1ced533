"""The generator: a causal transformer over latent video tokens, its KV cache and its sampler.

    from arvid.generator import Generator, GeneratorConfig, generate
    model = Generator(GeneratorConfig.from_name("mnist"))      # or Generator.from_pretrained(folder)
    for frame in generate(model, num_frames=20, labels=[3, 7], seed=0):
        ...                                                    # int64 (B, h, w) latent tokens

Files: config.py (the typed config and presets), rope.py (3D rotary positions), model.py (the
transformer), cache.py (the static ring-buffer KV cache), sampler.py (prefill, decode, sampling,
the generation loop), data.py (tokenized datasets), training.py (`arvid train generator`).
"""

from arvid.generator.cache import KVCache
from arvid.generator.config import PRESETS, GeneratorConfig
from arvid.generator.model import Generator, check_labels, check_tokens, slot_inputs
from arvid.generator.sampler import (
    Sampling,
    decode_one_token,
    generate,
    guide,
    guide_history,
    logits_to_probs,
    prefill,
    sample,
    window_logits,
)

__all__ = ["PRESETS", "Generator", "GeneratorConfig", "KVCache", "Sampling", "check_labels", "check_tokens",
           "decode_one_token", "generate", "guide", "guide_history", "logits_to_probs", "prefill", "sample", "slot_inputs",
           "window_logits"]
