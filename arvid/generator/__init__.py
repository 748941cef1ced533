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

from __future__ import annotations

# Loaded on first use: the decoding settings (`Sampling`) need no torch, so `arvid generate --help` builds its options
# without importing it.
_CONFIG = ("PRESETS", "GeneratorConfig")
_MODEL = ("Generator", "check_labels", "check_tokens", "slot_inputs")
_SAMPLER = ("check_request", "decode_one_token", "generate", "guide", "logits_to_probs", "prefill", "sample",
            "window_logits")

__all__ = ["PRESETS", "Generator", "GeneratorConfig", "KVCache", "Sampling", "check_labels", "check_request",
           "check_tokens", "decode_one_token", "generate", "guide", "logits_to_probs", "prefill", "sample",
           "slot_inputs", "window_logits"]


def __getattr__(name: str):
    if name == "Sampling":
        from arvid.generator import sampling as module
    elif name == "KVCache":
        from arvid.generator import cache as module
    elif name in _CONFIG:
        from arvid.generator import config as module
    elif name in _MODEL:
        from arvid.generator import model as module
    elif name in _SAMPLER:
        from arvid.generator import sampler as module
    else:
        raise AttributeError(f"module 'arvid.generator' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
