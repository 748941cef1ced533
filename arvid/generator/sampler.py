"""Sampling latent tokens, in small functions (after gpt-fast's generate.py).

    for frame in generate(model, 20, Sampling(top_k=50), labels=[3, 7], seed=0):
        ...  # frame: int64 (B, h, w), yielded as soon as its last token is sampled

    check_request     labels as a tensor, and guidance refused without them: checked once, before any work
    logits_to_probs   temperature, top-k, top-p and min-p on a batch of logits
    sample            one token per row: greedy, or the exponential race on given noise (no host sync)
    guide             classifier-free guidance: cond + (g - 1)·(cond - uncond); g = 1 returns cond exactly
    prefill           run a context into the KV cache, a chunk of slots at a time
    decode_one_token  raster: one slot through the cache, then sampling: static shapes, compilable
    masked_step       masked: one step of a frame's decoding through the cache: static shapes, compilable
    commit            masked: which of a frame's tokens a step decides (confidence order, annealed noise)
    window_logits     the baseline: recompute the receptive field (sinks + last n_layer·W frames)
    generate          the loop, yielding each latent frame's tokens

Masked models decode a latent frame in `steps` passes (MaskGIT, Chang et al. 2022): every token starts masked;
each pass predicts all of them at once, samples every masked one, and commits the most confident, keeping
F·cos(π/2·(k+1)/K) masked after step k (the cosine schedule), until none is; the confidence of a sampled token
is its log-probability plus Gumbel noise scaled by `choice_temperature`·(1 - (k+1)/K). A last pass writes the
decided frame into the KV cache, where the next frames read it.

The settings come as one `Sampling` value (sampling.py), passed down unchanged; a setting at its "off"
value costs nothing (guidance 1 runs no unconditional pass).

Randomness comes from one torch.Generator seeded by `seed` on the model's device: the same seed,
settings and device give the same tokens. The noise is drawn outside the decode step, so the step
itself holds no random state and compiles (`torch.compile(mode="reduce-overhead")` on a GPU).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import torch

from arvid.errors import ArvidError
from arvid.generator.cache import KVCache
from arvid.generator.model import Generator, check_labels, check_tokens
from arvid.generator.sampling import Sampling, check_seed


def check_request(model: Generator, s: Sampling, labels, batch: int, device=None) -> torch.Tensor | None:
    """Labels as int64 (B, k) on `device` (None: unconditional); ArvidError for labels this model cannot take,
    or for guidance without labels."""
    labels = check_labels(model.config, labels, batch, device)
    if s.is_on("guidance") and labels is None:
        raise ArvidError(f"guidance {s.guidance:g} needs labels: give labels (--label), or set guidance to 1 (off)")
    return labels


def logits_to_probs(logits: torch.Tensor, s: Sampling = Sampling()) -> torch.Tensor:
    """Probabilities (B, V) float32 from logits (B, V) after temperature (> 0), top-k, top-p and min-p."""
    logits = logits.float() / max(s.temperature, 1e-5)
    top_k, top_p, min_p = s.top_k, s.top_p, s.min_p
    if s.is_on("top_k") and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.is_on("top_p"):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly before each token
        drop = (before >= top_p).scatter(-1, order, before >= top_p)  # the first token is always kept
        logits = logits.masked_fill(drop, float("-inf"))
    if s.is_on("min_p"):  # p_i >= min_p · p_max  <=>  logit_i >= logit_max + log(min_p); the most likely token always stays
        floor = logits.amax(-1, keepdim=True) + math.log(min_p)  # (B, 1)
        logits = logits.masked_fill(logits < floor, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample(logits: torch.Tensor, noise: torch.Tensor | None, s: Sampling) -> torch.Tensor:
    """One token (B,) int64 per row of logits (B, V); noise (B, V) ~ Exp(1) unless greedy."""
    if s.temperature == 0 or noise is None:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, s)
    return (probs / noise).argmax(-1)  # argmax p_i / E_i with E_i ~ Exp(1) draws i with probability p_i


def guide(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    """(2B, V) logits, conditional rows first, to guided (B, V); (B, V) unchanged without guidance."""
    if not s.is_on("guidance"):
        return logits
    cond, uncond = logits.float().chunk(2, dim=0)
    return cond + (s.guidance - 1.0) * (cond - uncond)


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
                     labels: torch.Tensor | None, noise: torch.Tensor | None, s: Sampling) -> torch.Tensor:
    """The token (B,) of slot `pos` (1,) given its inputs (MB, 1): MB = 2B with guidance, else B."""
    return sample(guide(model.decode(inputs, pos, cache, labels)[:, -1], s), noise, s)


def masked_schedule(frame_tokens: int, steps: int) -> list[int]:
    """Tokens still masked after each step k = 0 .. steps-1: F·cos(π/2·(k+1)/K), rounded down (0 after the last)."""
    return [int(frame_tokens * math.cos(math.pi / 2 * (k + 1) / steps) + 1e-9) if k + 1 < steps else 0
            for k in range(steps)]


def commit(logits: torch.Tensor, tokens: torch.Tensor, noise: torch.Tensor | None, gumbel: torch.Tensor | None,
           keep_masked: torch.Tensor, mask_token: int, s: Sampling) -> torch.Tensor:
    """One step's decisions for a frame: logits (B, F, V) (guided), tokens (B, F) with `mask_token` where undecided,
    noise (B·F, V) ~ Exp(1) for sampling (None: greedy), gumbel (B, F) ~ Gumbel(0, 1) already scaled for this step
    (None: none), keep_masked () int64: how many undecided tokens stay masked. -> the new tokens (B, F)."""
    B, Fr, V = logits.shape
    flat = logits.reshape(B * Fr, V)
    sampled = sample(flat, noise, s).view(B, Fr)  # (B, F)
    conf = torch.log_softmax(flat.float(), -1).gather(-1, sampled.view(-1, 1)).view(B, Fr)  # log p(sampled)
    if gumbel is not None:
        conf = conf + gumbel
    undecided = tokens == mask_token
    conf = conf.masked_fill(~undecided, float("inf"))
    rank = conf.argsort(dim=-1).argsort(dim=-1)  # (B, F): 0 for the least confident
    return torch.where(undecided & (rank >= keep_masked), sampled, tokens)


def masked_step(model: Generator, cache: KVCache, tokens: torch.Tensor, pos: torch.Tensor, labels: torch.Tensor | None,
                noise: torch.Tensor | None, gumbel: torch.Tensor | None, keep_masked: torch.Tensor,
                s: Sampling) -> torch.Tensor:
    """One decoding step of the frame at slots `pos` (F,): its tokens (B, F) (mask token where undecided) run
    through the cache (rows repeated for guidance's unconditional pass), then `commit`. -> tokens (B, F)."""
    mb = 1 if labels is None else labels.shape[0] // tokens.shape[0]
    logits = guide(model.decode(tokens.repeat(mb, 1), pos, cache, labels), s)  # (B, F, V)
    return commit(logits, tokens, noise, gumbel, keep_masked, model.config.mask_token, s)


def frame_logits(model: Generator, clean: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Masked: logits (B, F, V) of the frame `tokens` (B, F) after the clean frames `clean` (B, t·F), recomputed
    from scratch over the receptive field (sinks + the last n_layer·W frames): the baseline of the cache."""
    cfg = model.config
    F, s = cfg.frame_tokens, cfg.sink_frames
    t = clean.shape[1] // F
    first = t - cfg.n_layer * cfg.window_frames
    if first > s:
        clean = torch.cat([clean[:, : s * F], clean[:, first * F:]], dim=1)
    seq = torch.cat([clean, tokens], dim=1)
    return model(seq, labels, clean=seq)[:, -F:]


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


@functools.cache
def _compiled_masked_step():
    return torch.compile(masked_step, mode="reduce-overhead", fullgraph=True)


def generate(model: Generator, num_frames: int, sampling: Sampling | None = None, *, batch: int = 1, labels=None,
             context: torch.Tensor | None = None, partial: torch.Tensor | None = None, seed: int = 0,
             use_cache: bool = True, compile: bool | None = None) -> Iterator[torch.Tensor]:
    """Yield `num_frames` new latent frames, int64 (B, h, w) each, after `context` (B, t0, h, w) if given.

    partial: the first n tokens (B, n), 0 <= n < h·w, of the first new frame, already known (a clip that ends
    inside a latent frame): that frame is yielded with them as given and the rest drawn after them (raster), or
    around them (masked: they start decided).

    sampling: how tokens are drawn (default: `Sampling()`, temperature 1). labels: k labels for all clips or
    (B, k) (-1: none). use_cache=False recomputes the window for each token (the baseline). compile:
    torch.compile the decode step (default: on CUDA). The arguments are checked when this is called; the
    frames come token by token (raster models) or a frame at a time in `steps` passes (masked models).
    """
    s = sampling if sampling is not None else Sampling()
    seed = check_seed(seed)
    cfg, device = model.config, next(model.parameters()).device
    if context is not None:
        check_tokens(cfg, context, "context tokens")
        batch = context.shape[0]
        context = context.to(device)
    partial = _check_partial(cfg, partial, batch, device)
    if num_frames < 0 or batch < 1:
        raise ArvidError(f"cannot generate {num_frames} frame(s) for a batch of {batch}")
    labels = check_request(model, s, labels, batch, device)
    guided = s.is_on("guidance")
    if guided:  # (2B, k): conditional rows first, then the unconditional ones
        labels = torch.cat([labels, model.null_labels(batch, device)])
    compile = compile if compile is not None else device.type == "cuda"
    if cfg.masked:
        return _generate_masked(model, num_frames, s, batch, labels, context, partial, seed, use_cache, compile)
    return _generate_raster(model, num_frames, s, batch, labels, context, partial, seed, use_cache, compile)


def _check_partial(cfg, partial: torch.Tensor | None, batch: int, device) -> torch.Tensor | None:
    """The known first tokens of the next frame as int64 (B, n) on `device`, n < h·w; None when none are."""
    if partial is None:
        return None
    if not torch.is_tensor(partial) or partial.ndim != 2 or partial.dtype.is_floating_point \
            or partial.dtype == torch.bool:
        raise ArvidError(f"partial must be integer tokens (B, n), got "
                         f"{tuple(partial.shape) if torch.is_tensor(partial) else type(partial).__name__}")
    if not partial.shape[1] < cfg.frame_tokens:
        raise ArvidError(f"partial holds {partial.shape[1]} tokens; a latent frame has {cfg.frame_tokens}: give "
                         "whole frames as context and at most the first frame_tokens - 1 of the next as partial")
    if partial.shape[0] != batch:
        raise ArvidError(f"partial has {partial.shape[0]} rows for a batch of {batch}")
    if partial.numel() and (int(partial.min()) < 0 or int(partial.max()) >= cfg.vocab_size):
        raise ArvidError(f"partial tokens hold codes outside 0..{cfg.vocab_size - 1}")
    return partial.to(device=device, dtype=torch.long) if partial.shape[1] else None


@torch.no_grad()
def _generate_raster(model, num_frames, s, batch, labels, context, partial, seed, use_cache, compile):
    cfg, device = model.config, next(model.parameters()).device
    mb = 2 * batch if s.is_on("guidance") else batch  # the model's batch
    F = cfg.frame_tokens
    history = torch.full((mb, 1), cfg.bos_token, dtype=torch.long, device=device)  # inputs so far
    if context is not None and context.shape[1]:
        ctx = context.reshape(batch, -1).repeat(mb // batch, 1)  # (MB, N0)
        history = torch.cat([history, ctx], dim=1)
    given = 0 if partial is None else partial.shape[1]  # tokens of the first new frame already known
    if given:
        history = torch.cat([history, partial.repeat(mb // batch, 1)], dim=1)
    n0 = history.shape[1] - 1  # the first new slot
    cache = None
    if use_cache:
        cache = KVCache.allocate(cfg, mb, device, next(model.parameters()).dtype)
        prefill(model, cache, history[:, :n0], labels)
    step = _compiled_step() if compile else decode_one_token
    gen = torch.Generator(device).manual_seed(int(seed))
    pos = torch.tensor([n0], device=device)
    prev = history[:, -1:]  # (MB, 1): input of the next slot
    for f in range(num_frames):
        frame = torch.empty(batch, F, dtype=torch.long, device=device)
        start = given if f == 0 else 0
        if start:
            frame[:, :start] = partial
        for i in range(start, F):
            noise = None if s.temperature == 0 else \
                torch.empty(batch, cfg.vocab_size, device=device).exponential_(generator=gen)
            if use_cache:
                token = step(model, cache, prev, pos, labels, noise, s)  # (B,)
            else:
                token = sample(guide(window_logits(model, history, labels), s), noise, s)
            frame[:, i] = token
            prev = token.repeat(mb // batch)[:, None]  # (MB, 1)
            pos += 1
            if not use_cache:
                history = torch.cat([history, prev], dim=1)  # (MB, p + 2)
        yield frame.view(batch, cfg.latent_h, cfg.latent_w)


@torch.no_grad()
def _generate_masked(model, num_frames, s, batch, labels, context, partial, seed, use_cache, compile):
    cfg, device = model.config, next(model.parameters()).device
    mb = 2 * batch if s.is_on("guidance") else batch  # the model's batch
    F, V, mask = cfg.frame_tokens, cfg.vocab_size, cfg.mask_token
    clean = torch.empty(mb, 0, dtype=torch.long, device=device)  # decided frames (only without the cache)
    if context is not None and context.shape[1]:
        clean = context.reshape(batch, -1).repeat(mb // batch, 1)  # (MB, t0·F)
    n0 = clean.shape[1]
    cache = None
    if use_cache:
        cache = KVCache.allocate(cfg, mb, device, next(model.parameters()).dtype)
        prefill(model, cache, clean, labels)
        clean = clean[:, :0]
    step = _compiled_masked_step() if compile else masked_step
    gen = torch.Generator(device).manual_seed(int(seed))
    schedule = [torch.tensor(n, device=device) for n in masked_schedule(F, s.steps)]
    pos = torch.arange(n0, n0 + F, device=device)
    for f in range(num_frames):
        tokens = torch.full((batch, F), mask, dtype=torch.long, device=device)
        if f == 0 and partial is not None:  # known tokens start decided
            tokens[:, :partial.shape[1]] = partial
        for k, keep in enumerate(schedule):
            noise = None if s.temperature == 0 else \
                torch.empty(batch * F, V, device=device).exponential_(generator=gen)
            scale = s.choice_temperature * (1 - (k + 1) / s.steps)
            gumbel = None
            if scale > 0:
                u = torch.empty(batch, F, device=device).uniform_(generator=gen)
                gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7))) * scale
            if use_cache:
                tokens = step(model, cache, tokens, pos, labels, noise, gumbel, keep, s)
            else:
                logits = guide(frame_logits(model, clean, tokens.repeat(mb // batch, 1), labels), s)
                tokens = commit(logits, tokens, noise, gumbel, keep, mask, s)
        if use_cache:  # the decided frame into the cache, where the next frames read it
            model.decode(tokens.repeat(mb // batch, 1), pos, cache, labels, logits=False)
        else:
            clean = torch.cat([clean, tokens.repeat(mb // batch, 1)], dim=1)
        pos = pos + F
        yield tokens.view(batch, cfg.latent_h, cfg.latent_w)
