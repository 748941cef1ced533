"""Sampling latent tokens, in small functions (after gpt-fast's generate.py).

    for frame in generate(model, num_frames=20, labels=[3, 7], seed=0, top_k=50):
        ...  # frame: int64 (B, h, w), yielded as soon as its last token is sampled

    logits_to_probs   temperature, top-k, top-p and min-p on a batch of logits
    sample            one token per row: greedy, or the exponential race on given noise (no host sync)
    guide             classifier-free guidance: cond + (g - 1)·(cond - uncond); g = 1 returns cond exactly
    guide_history     history guidance: the same rule, against the frame sampled without the clip's past
    prefill           run a context into the KV cache, a chunk of slots at a time
    decode_one_token  one slot through the cache, then sampling: static shapes, compilable
    window_logits     the baseline: recompute the receptive field (sinks + last n_layer·W frames)
    generate          the loop, yielding each latent frame's tokens

History guidance (after History-Guided Video Diffusion, Song et al. 2025, and context-aware decoding,
Shi et al. 2023) runs each latent frame twice: with the clip's past (the cache), and as the first frame
of a fresh clip (a second cache, emptied at every frame), fed the same tokens. Scale h > 1 moves the
logits further along what the past adds, so tokens the earlier frames explain win more often. On the
default model it steadies short clips but, like cold sampling and min-p, loses or merges digits over
1,024 frames (measured in the model card): neither is a default.

Randomness comes from one torch.Generator seeded by `seed` on the model's device: the same seed,
settings and device give the same tokens. The noise is drawn outside the decode step, so the step
itself holds no random state and compiles (`torch.compile(mode="reduce-overhead")` on a GPU).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from arvid.errors import ArvidError
from arvid.generator.cache import KVCache
from arvid.generator.model import Generator, check_labels, check_tokens, slot_inputs


# setting: (its name in messages, whether a value is valid, what is valid); None always means "not set"
_RULES = {
    "temperature": ("temperature", lambda v: v >= 0, ">= 0 (0: greedy)"),
    "top_k": ("top-k", lambda v: v >= 1, ">= 1"),
    "top_p": ("top-p", lambda v: 0 < v <= 1, "in (0, 1]"),
    "min_p": ("min-p", lambda v: 0 <= v <= 1, "in [0, 1] (0: off)"),
    "guidance": ("guidance scale", lambda v: v >= 0, ">= 0 (1: no guidance)"),
    "history_guidance": ("history guidance scale", lambda v: v >= 0, ">= 0 (1: off)"),
}


def check_setting(key: str, value, name: str | None = None) -> None:
    """ArvidError unless `value` is None or valid for sampling setting `key`; `name` (e.g. "--top-p") is
    how the message calls it (default: its plain name). NaN is never valid."""
    label, ok, rule = _RULES[key]
    if value is not None and not ok(value):
        raise ArvidError(f"{name or label} must be {rule}, got {value}")


def check_settings(source, flags: bool = False) -> None:
    """`check_setting` for every sampling setting `source` has as an attribute (a Sampling, SamplingOptions, or
    parsed CLI arguments); flags=True names them as the CLI does (--top-p)."""
    for key in _RULES:
        check_setting(key, getattr(source, key, None), "--" + key.replace("_", "-") if flags else None)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set of tokens holding probability top_p
    guidance: float | None = None  # classifier-free guidance scale; None: no unconditional pass
    min_p: float | None = None  # keep the tokens at least min_p times as likely as the most likely one
    history_guidance: float | None = None  # guidance scale against the frame without the past; None: off

    def __post_init__(self) -> None:
        check_settings(self)


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """Probabilities (B, V) float32 from logits (B, V) after temperature (> 0), top-k, top-p and min-p."""
    logits = logits.float() / max(temperature, 1e-5)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly before each token
        drop = (before >= top_p).scatter(-1, order, before >= top_p)  # the first token is always kept
        logits = logits.masked_fill(drop, float("-inf"))
    if min_p:  # p_i >= min_p · p_max  <=>  logit_i >= logit_max + log(min_p); the most likely token always stays
        floor = logits.amax(-1, keepdim=True) + math.log(min_p)  # (B, 1)
        logits = logits.masked_fill(logits < floor, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample(logits: torch.Tensor, noise: torch.Tensor | None, s: Sampling) -> torch.Tensor:
    """One token (B,) int64 per row of logits (B, V); noise (B, V) ~ Exp(1) unless greedy."""
    if s.temperature == 0 or noise is None:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, s.temperature, s.top_k, s.top_p, s.min_p)
    return (probs / noise).argmax(-1)  # argmax p_i / E_i with E_i ~ Exp(1) draws i with probability p_i


def guide(logits: torch.Tensor, guidance: float | None) -> torch.Tensor:
    """(2B, V) logits, conditional rows first, to guided (B, V); (B, V) unchanged without guidance."""
    if guidance is None:
        return logits
    cond, uncond = logits.float().chunk(2, dim=0)
    return cond + (guidance - 1.0) * (cond - uncond)


def guide_history(logits: torch.Tensor, fresh: torch.Tensor | None, scale: float | None) -> torch.Tensor:
    """Logits (B, V) with the past, moved by (h - 1)·(logits - fresh), fresh: the same slot without the past."""
    if fresh is None or scale is None:
        return logits
    return logits + (scale - 1.0) * (logits - fresh)


def prefill(model: Generator, cache: KVCache, inputs: torch.Tensor, labels: torch.Tensor | None,
            start: int = 0) -> None:
    """Write slots start .. start+N-1 with inputs (B, N) into the cache, in chunks inside latent frames."""
    F = model.config.frame_tokens
    p, end = start, start + inputs.shape[1]
    while p < end:
        n = min(cache.max_chunk, F - p % F, end - p)  # a chunk never crosses a frame
        pos = torch.arange(p, p + n, device=inputs.device)
        model.decode(inputs[:, p - start: p - start + n], pos, cache, labels, logits=False)
        p += n


def decode_one_token(model: Generator, cache: KVCache, inputs: torch.Tensor, pos: torch.Tensor,
                     labels: torch.Tensor | None, noise: torch.Tensor | None, s: Sampling,
                     fresh: tuple[KVCache, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The token (B,) of slot `pos` (1,) given its inputs (MB, 1): MB = 2B with guidance, else B.

    fresh: (cache, inputs (MB, 1), pos (1,)) of the same slot in a clip that starts at this frame, for
    history guidance; None skips that pass (no history guidance, or a first frame, which has no past)."""
    logits = guide(model.decode(inputs, pos, cache, labels)[:, -1], s.guidance)  # (B, V)
    if fresh is not None:
        f_cache, f_inputs, f_pos = fresh
        logits = guide_history(logits, guide(model.decode(f_inputs, f_pos, f_cache, labels)[:, -1], s.guidance),
                               s.history_guidance)
    return sample(logits, noise, s)


def window_logits(model: Generator, inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Logits (B, V) of the last slot of inputs (B, p+1), recomputed from scratch over what it depends on.

    With n_layer layers of a W-frame window, slot p in frame t depends on the sinks and the inputs
    of frames t - n_layer·W .. t (its receptive field). Frames before that are cut out and the rest
    re-indexed to start at frame s: relative times are unchanged, and every slot whose output
    matters sees the sinks at the same (clamped) distance, so the logits equal the full and the
    cached pass. The cost per token is constant: the baseline the KV cache is measured against.
    """
    cfg = model.config
    F, s = cfg.frame_tokens, cfg.sink_frames
    t = (inputs.shape[1] - 1) // F
    first = t - cfg.n_layer * cfg.window_frames  # first frame of the receptive field
    if first > s:
        inputs = torch.cat([inputs[:, : s * F], inputs[:, first * F:]], dim=1)
    return model(inputs, labels)[:, -1]


@functools.cache
def _compiled_step():
    return torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True)


def _model_labels(model: Generator, labels, batch: int, guided: bool, device) -> torch.Tensor | None:
    labels = check_labels(model.config, labels, batch, device)
    if guided:
        if labels is None:
            raise ArvidError("guidance needs labels: give a label, or no guidance scale")
        labels = torch.cat([labels, model.null_labels(batch, device)])  # (2B, k): conditional rows first
    return labels


@torch.no_grad()
def generate(model: Generator, num_frames: int, *, batch: int = 1, labels=None, context: torch.Tensor | None = None,
             seed: int = 0, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             guidance: float | None = None, min_p: float | None = None, history_guidance: float | None = None,
             use_cache: bool = True, compile: bool | None = None) -> Iterator[torch.Tensor]:
    """Yield `num_frames` new latent frames, int64 (B, h, w) each, after `context` (B, t0, h, w) if given.

    labels: k labels for all clips or (B, k) (-1: none); guidance: classifier-free scale (1 equals
    no guidance; None skips the unconditional pass). history_guidance: scale against each frame
    sampled without the clip's past (1 or None: off; costs a second pass). use_cache=False recomputes
    the window for each token (the baseline). compile: torch.compile the decode step (default: on CUDA).
    """
    cfg, device = model.config, next(model.parameters()).device
    if history_guidance == 1:
        history_guidance = None  # h = 1 is plain sampling: skip the second pass
    s = Sampling(temperature, top_k, top_p, guidance, min_p, history_guidance)
    if context is not None:
        check_tokens(cfg, context, "context tokens")
        batch = context.shape[0]
        context = context.to(device)
    if num_frames < 0 or batch < 1:
        raise ArvidError(f"cannot generate {num_frames} frame(s) for a batch of {batch}")
    guided = guidance is not None
    labels = _model_labels(model, labels, batch, guided, device)
    mb = 2 * batch if guided else batch  # the model's batch: conditional rows, then unconditional ones

    F = cfg.frame_tokens
    history = torch.full((mb, 1), cfg.bos_token, dtype=torch.long, device=device)  # inputs so far
    if context is not None and context.shape[1]:
        ctx = context.reshape(batch, -1).repeat(mb // batch, 1)  # (MB, N0)
        history = torch.cat([history, ctx], dim=1)
    n0 = history.shape[1] - 1  # the first new slot
    cache = None
    if use_cache:
        dtype = next(model.parameters()).dtype
        cache = KVCache.allocate(cfg, mb, device, dtype)
        prefill(model, cache, history[:, :n0], labels)
    fresh_cache = None  # history guidance: the frame being sampled, as the first frame of a fresh clip
    if s.history_guidance is not None and use_cache:
        fresh_cache = KVCache.allocate(cfg, mb, device, dtype)
    bos = torch.full((mb, 1), cfg.bos_token, dtype=torch.long, device=device)
    fresh_pos = torch.arange(F, device=device)  # the fresh clip's slots: a view of one per token, no allocation
    step = _compiled_step() if (compile if compile is not None else device.type == "cuda") else decode_one_token
    gen = torch.Generator(device).manual_seed(int(seed))
    pos = torch.tensor([n0], device=device)
    prev = history[:, -1:]  # (MB, 1): input of the next slot
    for t in range(num_frames):
        frame = torch.empty(batch, F, dtype=torch.long, device=device)
        guided_by_past = s.history_guidance is not None and (n0 > 0 or t > 0)  # frame 0 of a clip has no past
        if fresh_cache is not None:
            fresh_cache.reset()
        for i in range(F):
            noise = None if s.temperature == 0 else \
                torch.empty(batch, cfg.vocab_size, device=device).exponential_(generator=gen)
            f_inputs = bos if i == 0 else prev  # (MB, 1): the fresh clip's slot i
            if use_cache:
                fresh = (fresh_cache, f_inputs, fresh_pos[i:i + 1]) if guided_by_past else None
                token = step(model, cache, prev, pos, labels, noise, s, fresh)  # (B,)
            else:
                logits = guide(window_logits(model, history, labels), s.guidance)
                if guided_by_past:
                    own = frame[:, :i].repeat(mb // batch, 1)  # (MB, i): this frame's tokens so far
                    fresh_logits = model(torch.cat([bos, own], dim=1), labels)[:, -1]
                    logits = guide_history(logits, guide(fresh_logits, s.guidance), s.history_guidance)
                token = sample(logits, noise, s)
            frame[:, i] = token
            prev = token.repeat(mb // batch)[:, None]  # (MB, 1)
            pos += 1
            if not use_cache:
                history = torch.cat([history, prev], dim=1)  # (MB, p + 2)
        yield frame.view(batch, cfg.latent_h, cfg.latent_w)
