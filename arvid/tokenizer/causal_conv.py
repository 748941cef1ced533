"""Causal 3D convolution with an explicit streaming state, and the per-frame layers around it.

A causal convolution pads time only with the past: output frame t sees input frames t-k+1 .. t.
The whole-clip pass pads the start with k-1 zero frames. The streaming pass keeps the last k-1
input frames of every convolution in a `StreamState` (passed explicitly, owned by the caller) and
prepends them to the next chunk; the first chunk finds no entry and pads with zeros, exactly as the
whole-clip pass does, so any split of a clip into chunks gives the same output.

Everything that is not a convolution works frame by frame (`FrameNorm` normalises each frame on
its own), which keeps the whole network causal and streamable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StreamState:
    """The past input frames of each causal convolution of one stream, keyed by the module.

    `keep_graph`: keep the past frames in the autograd graph (training a model that runs latent frame by
    latent frame backpropagates through time); otherwise they are detached, as inference wants."""

    def __init__(self, keep_graph: bool = False):
        self._past: dict[int, torch.Tensor] = {}
        self.keep_graph = keep_graph

    def get(self, module: nn.Module) -> torch.Tensor | None:
        return self._past.get(id(module))

    def set(self, module: nn.Module, frames: torch.Tensor) -> None:
        self._past[id(module)] = frames

    def copy(self) -> "StreamState":
        """A state that starts where this one is and can move on without changing it (the tensors are shared:
        a convolution replaces its entry, it never writes into one)."""
        other = StreamState(self.keep_graph)
        other._past = dict(self._past)
        return other

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._past.values())


class CausalConv3d(nn.Module):
    """Conv3d over (B, C, T, H, W), causal in time, "same" padding in space, optional spatial stride."""

    def __init__(self, c_in: int, c_out: int, kernel_t: int = 3, kernel_s: int = 3, stride_s: int = 1):
        super().__init__()
        self.kernel_t = kernel_t
        self.conv = nn.Conv3d(c_in, c_out, (kernel_t, kernel_s, kernel_s), stride=(1, stride_s, stride_s),
                              padding=(0, kernel_s // 2, kernel_s // 2))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        # x: (B, C, T, H, W) -> (B, C_out, T, H/stride, W/stride)
        k = self.kernel_t - 1
        if k == 0:
            return self.conv(x)
        past = state.get(self) if state is not None else None
        if past is None:
            past = x.new_zeros(x.shape[0], x.shape[1], k, *x.shape[3:])
        x = torch.cat([past, x], dim=2)  # (B, C, k + T, H, W)
        if state is not None:
            state.set(self, x[:, :, -k:] if state.keep_graph else x[:, :, -k:].detach())
        return self.conv(x)


class FrameNorm(nn.Module):
    """GroupNorm of each frame on its own (never across time), so it stays causal."""

    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, groups), channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B·T, C, H, W)
        return y.reshape(b, t, c, h, w).transpose(1, 2)


def _groups(channels: int, groups: int) -> int:
    while channels % groups:
        groups -= 1
    return groups


class ResBlock(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus the input (projected when the width changes)."""

    def __init__(self, c_in: int, c_out: int, kernel_t: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(c_in), CausalConv3d(c_in, c_out, kernel_t)
        self.norm2, self.conv2 = FrameNorm(c_out), CausalConv3d(c_out, c_out, kernel_t)
        self.skip = CausalConv3d(c_in, c_out, 1, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        y = self.conv1(F.silu(self.norm1(x)), state)
        y = self.conv2(F.silu(self.norm2(y)), state)
        return y + (self.skip(x) if self.skip is not None else x)


class Downsample(nn.Module):
    """Halve H and W with a strided convolution (frame by frame)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out, kernel_t=1, kernel_s=3, stride_s=2)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a convolution (frame by frame)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out, kernel_t=1, kernel_s=3)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))
