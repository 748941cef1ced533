"""Streaming encode and decode: one latent frame (or a few) at a time, in constant memory.

    enc = tok.encoder_stream(batch_size)
    codes = enc.push(frames)     # frames (B, C, n, H, W) -> codes of the latent frames completed (B, t_new, h, w)
    dec = tok.decoder_stream(batch_size)
    frames = dec.push(codes)     # codes (B, t_new, h, w) -> frames (B, C, n, H, W)

The encoder completes its first latent frame with the first frame, then one more with every τ
frames; frames that do not complete a latent frame wait for the next push. The decoder gives one
frame for the first latent frame and τ for each after it. Both carry the causal convolutions' past
frames in a `StreamState` (and a warping decoder its last frame), so the results equal the whole-clip pass (`Tokenizer.encode/decode`).
An encoder that codes with context also runs the decoder, with a state of its own, to know the frame the
decoder will show before each latent frame.
"""

from __future__ import annotations

import torch

from arvid.errors import ArvidError
from arvid.tokenizer.causal_conv import StreamState


class EncoderStream:
    def __init__(self, tokenizer, batch_size: int = 1, refine: int = 0):
        tokenizer.check_refine(refine)
        self.tok, self.batch_size, self.refine = tokenizer, int(batch_size), refine  # refine: see Tokenizer.encode
        self.state = StreamState()
        self.dec_state = StreamState()  # with context: the encoder's own copy of the decoder
        self.prev: torch.Tensor | None = None  # with context: the last two frames the decoder shows (B, C, 2, H, W)
        self.pending: torch.Tensor | None = None  # (B, C, n < τ, H, W) frames not yet in a latent frame
        self.frames_in = 0
        self.latent_out = 0

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, C, n, H, W) in [-1, 1] -> codes (B, t_new, h, w) of the latent frames they complete."""
        z, codes = self._push(frames)  # (B, D, t_new, h, w), and the codes if the closed loop made them already
        if z.shape[2] == 0:
            return torch.zeros(z.shape[0], 0, *z.shape[3:], dtype=torch.long, device=z.device)
        return codes if codes is not None else self.tok.quantizer(z, update=False)[1]

    @torch.no_grad()
    def push_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Like `push`, but return the latents before quantization, (B, D, t_new, h, w)."""
        return self._push(frames)[0]

    def _push(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tok, tau = self.tok, self.tok.temporal_factor
        self._check(frames)
        frames = frames.to(tok.device)
        if self.pending is None:  # the first frame makes a latent frame alone: τ-1 zero frames go first
            self.pending = frames.new_zeros(*frames.shape[:2], tau - 1, *frames.shape[3:])
        buf = torch.cat([self.pending, frames], dim=2)
        ready = buf.shape[2] // tau * tau
        self.pending = buf[:, :, ready:]
        self.frames_in += frames.shape[2]
        t_new = ready // tau
        if t_new == 0:
            _, h, w = tok.latent_shape(1, *frames.shape[3:])
            return frames.new_zeros(self.batch_size, tok.config.latent_dim, 0, h, w), None
        x = tok.fold(buf[:, :, :ready], pad_first=False)
        first = self.latent_out == 0
        self.latent_out += t_new
        if tok.config.context:
            z, codes, _, _, self.prev = tok.closed_loop(x, self.state, self.dec_state, self.prev, first=first,
                                                        refine=self.refine)
            return z, codes
        return tok.encoder(x, self.state), None

    def _check(self, frames: torch.Tensor) -> None:
        if not torch.is_tensor(frames) or frames.ndim != 5 or frames.shape[0] != self.batch_size:
            raise ArvidError(f"push frames (B={self.batch_size}, C, n, H, W), got "
                             f"{tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__}")
        if frames.shape[1] != self.tok.config.channels:
            raise ArvidError(f"frames have {frames.shape[1]} channels, the tokenizer takes {self.tok.config.channels}")
        self.tok.latent_shape(1, *frames.shape[3:])
        if self.pending is not None and frames.shape[3:] != self.pending.shape[3:]:
            raise ArvidError(f"frame size changed mid-stream: {tuple(self.pending.shape[3:])} then {tuple(frames.shape[3:])}")


class DecoderStream:
    def __init__(self, tokenizer, batch_size: int = 1):
        self.tok, self.batch_size = tokenizer, int(batch_size)
        self.state = StreamState()
        self.prev: torch.Tensor | None = None  # the last frame given out (B, C, H, W), which a warping decoder reuses;
        # with context, the last two (B, C, 2, H, W), which the context reads
        self.latent_in = 0

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, t_new, h, w) -> frames float32 (B, C, n, H, W) in [-1, 1]; n = τ·t_new (- (τ-1) at the start)."""
        tok = self.tok
        if not torch.is_tensor(codes) or codes.ndim != 4 or codes.shape[0] != self.batch_size:
            raise ArvidError(f"push codes (B={self.batch_size}, t, h, w), got "
                             f"{tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__}")
        c, s = tok.config.channels, tok.spatial_factor
        if codes.shape[1] == 0:
            return torch.zeros(self.batch_size, c, 0, codes.shape[2] * s, codes.shape[3] * s, device=tok.device)
        tok.check_codes(codes)
        zq = tok.quantizer.codes_to_latent(codes.to(tok.device))
        frames, self.prev = tok.render(zq, self.state, self.prev, first=self.latent_in == 0)
        self.latent_in += codes.shape[1]
        return frames.float().clamp(-1, 1)
