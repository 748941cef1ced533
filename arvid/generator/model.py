"""The causal video transformer over latent tokens (see config.py for the token layout and the two
decoding kinds, raster and masked).

Two ways to run it, with the same weights, mask and rotations:
    model(inputs, labels)                    raster: full forward over slots 0 .. N-1 (training, checks)
    model(inputs, labels, clean=tokens)      masked: the frames `inputs` (masked tokens) see the clean
                                             frames before them: two streams in one pass (training, checks)
    model.decode(inputs, pos, cache, labels) new slots against the KV cache: a token (raster) or a whole
                                             latent frame (masked): generation

Pre-norm blocks: RMSNorm, grouped-query attention with 3D rotary positions through
`arvid.kernels`, RMSNorm, SwiGLU MLP. A label condition (the sum of one embedding per label slot,
`null_label` meaning "no label") is added to every token embedding.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arvid.errors import ArvidError
from arvid.files import load_model_files, load_state, meta_layout, save_model
from arvid.generator.rope import rotate, sink_shift, slot_angles, time_rotation
from arvid.generator.cache import KVCache
from arvid.generator.config import GeneratorConfig
from arvid.kernels import decode_attention, flash_attention

KIND = "generator"


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Attention(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.nh, self.nh_kv, self.hs = cfg.n_head, cfg.n_kv_head, cfg.head_size
        self.qkv = nn.Linear(cfg.d_model, (self.nh + 2 * self.nh_kv) * self.hs, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split([self.nh * self.hs, self.nh_kv * self.hs, self.nh_kv * self.hs], dim=-1)
        q = q.view(B, L, self.nh, self.hs).transpose(1, 2)  # (B, nh, L, hs)
        k = k.view(B, L, self.nh_kv, self.hs).transpose(1, 2)  # (B, nh_kv, L, hs)
        v = v.view(B, L, self.nh_kv, self.hs).transpose(1, 2)  # (B, nh_kv, L, hs)
        return rotate(q, cos, sin), rotate(k, cos, sin), v

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        B, _, L, _ = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, L, self.nh * self.hs))  # (B, L, C)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Full forward over slots 0 .. N-1 (N a multiple of F); masked: x (B, 2N, C) is the clean stream, then
        the masked one, which sees the clean frames before its own (`masked_attention`)."""
        q, k, v = self._qkv(x, cos, sin)
        if not self.cfg.masked:
            return self._out(windowed_attention(self.cfg, q, k, v))
        N = q.shape[2] // 2
        (q_c, q_m), (k_c, k_m), (v_c, v_m) = (t.split(N, dim=2) for t in (q, k, v))
        out = torch.cat([windowed_attention(self.cfg, q_c, k_c, v_c),
                         masked_attention(self.cfg, q_m, k_m, v_m, k_c, v_c)], dim=2)  # (B, nh, 2N, hs)
        return self._out(out)

    def decode(self, x, cos, sin, layer: int, cache: KVCache, slots, sink_slots, sink_rot, pos_q):
        """New slots (B, L, C) at positions pos_q (B, L) against layer `layer` of the cache."""
        q, k, v = self._qkv(x, cos, sin)
        k_cache, v_cache = cache.k[layer], cache.v[layer]  # (B, nh_kv, S, hs)
        k_cache.index_copy_(2, slots, k)
        v_cache.index_copy_(2, slots, v)
        if cache.sinks:
            sink_k = cache.sink_k[layer]  # (B, nh_kv, sinks + 1, hs)
            sink_k.index_copy_(2, sink_slots, k)
            k_cache[:, :, : cache.sinks] = rotate(sink_k[:, :, : cache.sinks], *sink_rot)
        y = decode_attention(q, k_cache, v_cache, cache.pos, pos_q, window=self.cfg.window, sinks=self.cfg.sinks,
                             frame=self.cfg.frame)
        return self._out(y)


def windowed_attention(cfg: GeneratorConfig, q, k, v) -> torch.Tensor:
    """Attention of every slot over its window and the sinks, the mask and rotations of decoding.

    q (B, nh, N, hs), k, v (B, nh_kv, N, hs), rotated at their own positions, N = T·F. Frames up to
    W + s see the sinks at their true time: one causal call. Each later frame t sees the sinks
    shifted to just before its window (sink_shift): its F queries attend, in a batch of their
    own, to [shifted sinks, frames t-W .. t], laid out so the kernel's window and sink rule applies
    unchanged (relative positions inside the window are the true ones). The rule is token-causal for
    raster models and frame-causal (`frame` = F) for masked ones.
    """
    Fr, W, s = cfg.frame_tokens, cfg.window_frames, cfg.sink_frames
    window, sinks, frame = cfg.window, cfg.sinks, cfg.frame
    if s == 0:
        return flash_attention(q, k, v, causal=True, window=window, frame=frame)
    B, nh, N, hs = q.shape
    nh_kv, T = k.shape[1], N // Fr
    n_a = min(T, W + s + 1) * Fr
    out_a = flash_attention(q[:, :, :n_a], k[:, :, :n_a], v[:, :, :n_a], causal=True, window=window, sinks=sinks,
                            frame=frame)
    n_b = T - (W + s + 1)
    if n_b <= 0:
        return out_a
    q_b = q[:, :, n_a:].reshape(B, nh, n_b, Fr, hs).transpose(1, 2).reshape(B * n_b, nh, Fr, hs)
    frames = torch.arange(W + s + 1, T, device=q.device)  # (n_b,) query frames
    idx = ((frames - W)[:, None] * Fr + torch.arange((W + 1) * Fr, device=q.device)).flatten()  # (n_b·(W+1)F,)

    def gather(x):  # (B, nh_kv, N, hs) -> windows (B·n_b, nh_kv, (W+1)F, hs)
        return x[:, :, idx].view(B, nh_kv, n_b, (W + 1) * Fr, hs).transpose(1, 2).reshape(B * n_b, nh_kv, -1, hs)

    k_sink, v_sink = shifted_sinks(cfg, k, v, frames)  # (B·n_b, nh_kv, sinks, hs)
    k_b = torch.cat([k_sink, gather(k)], dim=2)  # (B·n_b, nh_kv, sinks + (W+1)F, hs)
    v_b = torch.cat([v_sink, gather(v)], dim=2)
    out_b = flash_attention(q_b, k_b, v_b, causal=True, window=window, sinks=sinks, frame=frame)  # (B·n_b, nh, F, hs)
    out_b = out_b.view(B, n_b, nh, Fr, hs).transpose(1, 2).reshape(B, nh, n_b * Fr, hs)
    return torch.cat([out_a, out_b], dim=2)  # (B, nh, N, hs)


def shifted_sinks(cfg: GeneratorConfig, k: torch.Tensor, v: torch.Tensor, frames: torch.Tensor):
    """The sink keys and values of a clip (B, nh_kv, N, hs), once per query frame in `frames` (n,), the keys
    rotated by that frame's sink shift (sink_shift) -> k, v (B·n, nh_kv, sinks, hs)."""
    B, nh_kv, _, hs = k.shape
    n, sinks = frames.shape[0], cfg.sinks
    cos, sin = time_rotation(cfg, sink_shift(cfg, frames))  # (n, hs/2)
    k_sink = rotate(k[:, None, :, :sinks], cos[None, :, None, None], sin[None, :, None, None])
    v_sink = v[:, None, :, :sinks].expand(B, n, nh_kv, sinks, hs)
    return k_sink.reshape(B * n, nh_kv, sinks, hs), v_sink.reshape(B * n, nh_kv, sinks, hs)


def masked_attention(cfg: GeneratorConfig, q, k, v, k_clean, v_clean) -> torch.Tensor:
    """Attention of masked frames: each latent frame t of q (B, nh, N, hs) sees its own keys k, v (all of its frame)
    and the clean keys k_clean, v_clean (B, nh_kv, N, hs) of the frames before it in the window, plus the sinks:
    what a frame being decoded sees through the KV cache, whose earlier frames were decoded clean.

    Frames up to W + s see the sinks at their true time: frame t attends, in a call of its own, to [clean frames
    0 .. t-1, its own frame] under the frame-causal rule. Each later frame t attends, in a batch of its own, to
    [the sinks shifted to just before its window, clean frames t-W+1 .. t-1, its own frame], all of it visible.
    """
    Fr, W, s = cfg.frame_tokens, cfg.window_frames, cfg.sink_frames
    window, sinks = cfg.window, cfg.sinks
    B, nh, N, hs = q.shape
    nh_kv, T = k.shape[1], N // Fr
    outs = []
    for t in range(min(T, W + s + 1)):
        own = slice(t * Fr, (t + 1) * Fr)
        k_t = torch.cat([k_clean[:, :, : t * Fr], k[:, :, own]], dim=2)  # (B, nh_kv, (t+1)F, hs)
        v_t = torch.cat([v_clean[:, :, : t * Fr], v[:, :, own]], dim=2)
        outs.append(flash_attention(q[:, :, own], k_t, v_t, causal=True, window=window, sinks=sinks, frame=Fr))
    n_b = T - (W + s + 1)
    if n_b > 0:
        frames = torch.arange(W + s + 1, T, device=q.device)  # (n_b,) query frames
        ctx = ((frames - W + 1)[:, None] * Fr + torch.arange((W - 1) * Fr, device=q.device)).flatten()

        def block(x_clean, x):  # -> (B·n_b, nh_kv, (W-1)F + F, hs): clean frames t-W+1 .. t-1, then frame t
            window_part = x_clean[:, :, ctx].view(B, nh_kv, n_b, (W - 1) * Fr, hs)
            own = x[:, :, (W + s + 1) * Fr:].view(B, nh_kv, n_b, Fr, hs)
            return torch.cat([window_part, own], dim=3).transpose(1, 2).reshape(B * n_b, nh_kv, W * Fr, hs)

        k_sink, v_sink = shifted_sinks(cfg, k_clean, v_clean, frames)
        k_b = torch.cat([k_sink, block(k_clean, k)], dim=2)  # (B·n_b, nh_kv, sinks + W·F, hs)
        v_b = torch.cat([v_sink, block(v_clean, v)], dim=2)
        q_b = q[:, :, (W + s + 1) * Fr:].reshape(B, nh, n_b, Fr, hs).transpose(1, 2).reshape(B * n_b, nh, Fr, hs)
        out_b = flash_attention(q_b, k_b, v_b, causal=True, window=window, sinks=sinks, frame=Fr)
        outs.append(out_b.view(B, n_b, nh, Fr, hs).transpose(1, 2).reshape(B, nh, n_b * Fr, hs))
    return torch.cat(outs, dim=2)  # (B, nh, N, hs)


class Block(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))

    def decode(self, x, cos, sin, *args):
        x = x + self.attn.decode(self.norm1(x), cos, sin, *args)
        return x + self.mlp(self.norm2(x))


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, cfg.d_model)  # + begin-of-clip
        if cfg.conditional:  # one table row per (label slot, class or null)
            self.label_emb = nn.Embedding(cfg.labels_per_clip * (cfg.num_classes + 1), cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / (2 * cfg.n_layer) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    # -- inputs

    def null_labels(self, batch: int, device=None) -> torch.Tensor:
        return torch.full((batch, self.config.labels_per_clip), self.config.null_label, dtype=torch.long, device=device)

    def _embed(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.tok_emb(inputs)  # (B, L, C)
        if self.config.conditional:
            if labels is None:
                labels = self.null_labels(inputs.shape[0], inputs.device)
            offsets = torch.arange(self.config.labels_per_clip, device=labels.device) * (self.config.num_classes + 1)
            x = x + self.label_emb(labels + offsets).sum(1)[:, None]  # (B, 1, C)
        return x

    # -- the two ways to run

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None,
                clean: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, N, V) of slots 0 .. N-1 from their inputs (B, N).

        raster: inputs are the tokens shifted by one (see `slot_inputs`). masked: inputs are whole latent frames
        of tokens, some replaced by the mask token, and `clean` (B, N) the same clip's tokens, whose frames the
        masked frames see before their own (each frame t of `inputs` sees clean frames < t and itself)."""
        if self.config.masked:
            return self._forward_masked(inputs, labels, clean)
        B, N = inputs.shape
        Fr = self.config.frame_tokens
        pad = -N % Fr  # complete the last frame; causal, so padding changes no earlier slot
        if pad:
            inputs = F.pad(inputs, (0, pad), value=self.config.bos_token)
        x = self._embed(inputs, labels)
        cos, sin = slot_angles(self.config, torch.arange(N + pad, device=inputs.device))  # (N, hs/2)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x[:, :N]))

    def _forward_masked(self, inputs: torch.Tensor, labels: torch.Tensor | None, clean: torch.Tensor | None):
        B, N = inputs.shape
        if clean is None or clean.shape != inputs.shape or N % self.config.frame_tokens:
            raise ArvidError(f"a masked generator takes whole latent frames of inputs (B, t·{self.config.frame_tokens}) "
                             f"and their clean tokens of the same shape, got {tuple(inputs.shape)} and "
                             f"{None if clean is None else tuple(clean.shape)}")
        x = self._embed(torch.cat([clean, inputs], dim=1), labels)  # (B, 2N, C): the clean stream, then the masked
        cos, sin = slot_angles(self.config, torch.arange(N, device=inputs.device).repeat(2))  # (2N, hs/2)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x[:, N:]))

    def decode(self, inputs: torch.Tensor, pos: torch.Tensor, cache: KVCache, labels: torch.Tensor | None = None,
               logits: bool = True) -> torch.Tensor | None:
        """Run new slots `pos` (L,) (inside one latent frame; masked: the whole frame) with inputs (B, L) against
        `cache`. Masked: the frame's slots are written again at every step of its decoding, last with its tokens.

        Writes their keys and values into the cache and returns their logits (B, L, V) (None with
        logits=False, for prefill). Static shapes, no host sync, no branch on tensor values.
        """
        cfg = self.config
        x = self._embed(inputs, labels)
        cos, sin = slot_angles(cfg, pos)  # (L, hs/2)
        slots = cache.write_positions(pos)
        sink_rot = time_rotation(cfg, sink_shift(cfg, pos[:1] // cfg.frame_tokens))  # (1, hs/2)
        pos_q = pos.expand(inputs.shape[0], -1)  # (B, L)
        args = (cache, slots, cache.sink_slots(pos), sink_rot, pos_q)
        for i, block in enumerate(self.blocks):
            x = block.decode(x, cos, sin, i, *args)
        return self.head(self.norm(x)) if logits else None

    # -- files

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write `path/` with model.safetensors and config.json (atomically)."""
        save_model(path, self, self.config.to_dict(), KIND)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device=None) -> "Generator":
        """Load a generator folder (or a training run folder) written by save_pretrained / arvid train."""
        files = load_model_files(path, KIND, cls.layout)  # config, header and weights checked against the layout
        model = cls(GeneratorConfig.from_dict(files.config, source=str(files.folder / "config.json")))
        load_state(model, files)
        return model.to(device) if device is not None else model

    @staticmethod
    def layout(config: dict | GeneratorConfig, source: str = "config") -> dict[str, torch.Tensor]:
        """The state dict of `Generator(config)`, built on the meta device (no memory for its weights)."""
        if not isinstance(config, GeneratorConfig):
            config = GeneratorConfig.from_dict(config, source=source)
        return meta_layout(lambda: Generator(config))


def slot_inputs(tokens: torch.Tensor, bos: int) -> torch.Tensor:
    """Inputs (B, N) of slots 0 .. N-1 for tokens (B, t, h, w) or (B, N): begin-of-clip, then x_0 .. x_{N-2}."""
    flat = tokens.reshape(tokens.shape[0], -1)  # (B, N)
    return F.pad(flat[:, :-1], (1, 0), value=bos)


def check_tokens(cfg: GeneratorConfig, tokens: torch.Tensor, what: str = "tokens") -> None:
    """Raise ArvidError unless tokens are (B, t, h, w) integer codes of this model's vocabulary and frame."""
    if tokens.ndim != 4 or tuple(tokens.shape[2:]) != (cfg.latent_h, cfg.latent_w):
        raise ArvidError(f"{what} have shape {tuple(tokens.shape)}; this generator needs (B, t, "
                         f"{cfg.latent_h}, {cfg.latent_w}) latent tokens: use the tokenizer it was trained with")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ArvidError(f"{what} must be integer codes, got {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
        raise ArvidError(f"{what} hold codes outside 0..{cfg.vocab_size - 1} (min {int(tokens.min())}, max "
                         f"{int(tokens.max())}): the tokenizer's codebook does not match this generator")


def check_labels(cfg: GeneratorConfig, labels, batch: int, device=None) -> torch.Tensor | None:
    """Labels as int64 (B, k) on `device` (None: unconditional), with clear errors; -1 means "no label"."""
    if labels is None:
        return None
    if not cfg.conditional:
        raise ArvidError("this generator was trained without labels: drop --label")
    k = cfg.labels_per_clip
    values = _whole_numbers(labels)
    if not values or len(values) % k or len(values) // k not in (1, batch):
        raise ArvidError(f"labels {labels!r}: give {k} integer label(s) per clip, for all clips or for each of {batch}")
    if min(values) < -1 or max(values) >= cfg.num_classes:  # Python ints: 1e30 is named as it is, not as an int64
        raise ArvidError(f"labels {values} out of range: classes are 0..{cfg.num_classes - 1} (-1: none)")
    t = torch.tensor(values, dtype=torch.long).reshape(-1, k)
    t = torch.where(t < 0, cfg.null_label, t)
    return t.expand(batch, -1).contiguous().to(device)


def _whole_numbers(labels) -> list[int]:
    """The labels as Python ints, or [] if any is not a whole number: a bool, a complex or non-finite number, text."""
    try:
        items = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=object).ravel()
    except (TypeError, ValueError):
        return []
    whole = [isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))
             or isinstance(x, (float, np.floating)) and float(x).is_integer() for x in items]
    return [int(x) for x in items] if all(whole) else []


__all__ = ["Generator", "check_labels", "check_tokens", "masked_attention", "slot_inputs", "windowed_attention"]
