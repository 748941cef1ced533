"""A static, preallocated KV cache: sink slots followed by a ring buffer of the window.

    cache = KVCache.allocate(cfg, batch=B, device=..., dtype=...)
    logits = model.decode(inputs, pos, cache, labels)   # writes slots, reads the cache

Every tensor is allocated once with fixed shapes, so the decode step can be compiled and captured
in a CUDA graph; the cache is passed explicitly, never attached to the model. Its size is set by
the window, not by the clip: slot memory for frame 10,000 is the memory of frame 10.

Layout of the S = sinks + ring slots of each layer:
    slots [0, sinks)      the sink positions 0 .. sinks-1 (the first latent frames), their keys
                          rotated afresh for each query frame (see rope.sink_shift)
    slots [sinks, S)      a ring: position p >= sinks lives in slot sinks + (p - sinks) % ring
`ring = window + max_chunk - 1`, so a chunk of up to `max_chunk` new positions never overwrites a
key that one of its queries still sees (a masked model writes a whole latent frame at a time:
max_chunk = F). `pos` holds the absolute position in each slot (-1: empty),
which is all the attention kernel needs for the mask (window and sinks included).

`sink_k` keeps the sink keys as written (at their own time), plus one scratch slot that absorbs
writes of non-sink positions, so writing needs no branch on positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arvid.generator.config import GeneratorConfig


@dataclass
class KVCache:
    k: torch.Tensor  # (n_layer, B, nh_kv, S, hs) keys, rotated for reading
    v: torch.Tensor  # (n_layer, B, nh_kv, S, hs)
    sink_k: torch.Tensor  # (n_layer, B, nh_kv, sinks + 1, hs) sink keys at their own time; last slot scratch
    pos: torch.Tensor  # (B, S) int64: absolute position held by each slot, -1 when empty
    sinks: int  # sink slots
    ring: int  # ring slots
    max_chunk: int  # most positions one decode call may write

    @classmethod
    def allocate(cls, cfg: GeneratorConfig, batch: int, device=None, dtype=torch.float32,
                 max_chunk: int | None = None) -> "KVCache":
        if max_chunk is None:
            max_chunk = cfg.decode_chunk
        ring = cfg.window + max_chunk - 1
        S = cfg.sinks + ring
        shape = (cfg.n_layer, batch, cfg.n_kv_head, S, cfg.head_size)
        k = torch.zeros(shape, device=device, dtype=dtype)
        v = torch.zeros(shape, device=device, dtype=dtype)
        sink_k = torch.zeros(shape[:3] + (cfg.sinks + 1, cfg.head_size), device=device, dtype=dtype)
        pos = torch.full((batch, S), -1, device=device, dtype=torch.long)
        cache = cls(k, v, sink_k, pos, cfg.sinks, ring, max_chunk)
        if k.is_cuda:  # fixed addresses: CUDA graphs may then mutate the cache in place
            for t in cache.tensors():
                torch._dynamo.mark_static_address(t)
        return cache

    @property
    def batch(self) -> int:
        return self.pos.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.k, self.v, self.sink_k, self.pos

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def reset(self) -> None:
        """Forget every position (in place: addresses stay fixed)."""
        self.pos.fill_(-1)

    def slots(self, pos: torch.Tensor) -> torch.Tensor:
        """Slot of each absolute position in `pos` (int64 (L,)): sinks first, then the ring."""
        ring_slot = self.sinks + (pos - self.sinks).remainder(self.ring)
        return torch.where(pos < self.sinks, pos, ring_slot)

    def sink_slots(self, pos: torch.Tensor) -> torch.Tensor:
        """Slot in `sink_k` for each position: its own below `sinks`, else the scratch slot."""
        return pos.clamp(max=self.sinks)

    def write_positions(self, pos: torch.Tensor) -> torch.Tensor:
        """Record positions `pos` (L,) in their slots; return the slots (L,)."""
        slots = self.slots(pos)
        self.pos.index_copy_(1, slots, pos.expand(self.batch, -1))
        return slots


__all__ = ["KVCache"]
