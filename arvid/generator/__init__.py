"""The generator: a causal transformer over latent video tokens, its KV cache and its sampler.

    from arvid.generator import Generator, GeneratorConfig, Sampling, generate
    model = Generator(GeneratorConfig.from_name("mnist"))      # or Generator.from_pretrained(folder)
    for frame in generate(model, 20, Sampling(top_k=50), labels=[3, 7], seed=0):
        ...                                                    # int64 (B, h, w) latent tokens

Files: config.py (the typed config and presets), rope.py (3D rotary positions), model.py (the
transformer and its model files), cache.py (the static ring-buffer KV cache), sampling.py (the one
`Sampling` value: every decoding setting, its range and its "off" value), sampler.py (prefill,
decode, sampling, the generation loop). Training lives above, in `arvid.train`; evaluation in
`arvid.eval`.
"""

from arvid.generator.cache import KVCache
from arvid.generator.config import PRESETS, GeneratorConfig
from arvid.generator.model import Generator, check_labels, check_tokens, slot_inputs
from arvid.generator.sampler import (
    check_request,
    decode_one_token,
    generate,
    guide,
    logits_to_probs,
    prefill,
    sample,
    window_logits,
)
from arvid.generator.sampling import Sampling

__all__ = ["PRESETS", "Generator", "GeneratorConfig", "KVCache", "Sampling", "check_labels", "check_request",
           "check_tokens", "decode_one_token", "generate", "guide", "logits_to_probs", "prefill", "sample",
           "slot_inputs", "window_logits"]
