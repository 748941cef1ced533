"""The tokenizer: a causal 3D-conv encoder, a quantizer, and a causal 3D-conv decoder.

Time: the encoder prepends τ-1 zero frames and folds each group of τ frames into channels, so the
first frame forms a latent frame on its own (images are one-frame videos) and every τ frames after
it form one more; the decoder unfolds τ frames per latent frame and drops the τ-1 padding frames.
Space: `patch` x `patch` pixels fold into channels, then strided convolutions halve H and W down to
the spatial factor. Everything in between is causal in time (see causal_conv.py), so encoding and
decoding can run one latent frame at a time (streaming.py) with the same result.

With `context` on (conditional coding, as in neural video codecs such as DCVC), the encoder and the
decoder of every latent frame also see the decoder's own previous output frame, through a small
pyramid of features at each resolution (ContextNet). Detail drawn once stays available, and since
the encoder sees exactly what the decoder already has, its codes need only carry what is new.
Encoding then runs the decoder too, one latent frame after another (a closed loop).

    tok = Tokenizer(TokenizerConfig.preset("mnist"))   # or Tokenizer.from_pretrained(folder)
    codes = tok.encode(video)      # (B, C, T, H, W) in [-1, 1] -> (B, t, h, w) int64
    video = tok.decode(codes)      # -> (B, C, T, H, W) in [-1, 1], T = 1 + (t - 1)·τ

Files: a tokenizer folder is `model.safetensors` + `config.json` (`arvid.files`); `Tokenizer.layout`
is what such a folder must hold for its config, checked before any weight is read. A training run's
folder is also a tokenizer folder (its top level holds the latest weights and config).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from arvid.errors import ArvidError
from arvid.files import load_model_files, load_state, meta_layout, save_model
from arvid.tokenizer.causal_conv import CausalConv3d, Downsample, FrameNorm, ResBlock, StreamState, Upsample
from arvid.tokenizer.config import TokenizerConfig
from arvid.tokenizer.frames import check_frames
from arvid.tokenizer.quantize import Quantizer
from arvid.tokenizer.streaming import DecoderStream, EncoderStream
from arvid.tokenizer.warp import MOTION_CHANNELS, render
from arvid.utils.device import resolve_device

KIND = "tokenizer"


class ContextNet(nn.Module):
    """What the decoder showed last, (B, C, 2, H, W) (its last two frames; None at the start of a clip), -> feature
    maps at every resolution level, [(B, widths[i], 1, H/p/2^i, W/p/2^i) for i in 0..num_down], one list for the
    encoder and one for the decoder (both see the same frames, so they share the trunk, not the output projections).

    The input is the last frame, folded like the encoder's input, plus a flag channel that tells the start of a
    clip (no frame yet) from a black frame. The output projections start at zero, so a new context tokenizer
    begins as the plain one and learns what to take from the frames."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        widths, self.patch, self.channels = cfg.level_widths, cfg.patch, cfg.channels
        self.in_channels = cfg.patch**2 * cfg.channels + 1
        self.conv_in = CausalConv3d(self.in_channels, widths[0], 1)
        self.downs = nn.ModuleList([nn.Sequential(Downsample(widths[i], widths[i + 1]), ResBlock(widths[i + 1], widths[i + 1], 1))
                                    for i in range(cfg.num_down)])
        self.enc_out = nn.ModuleList([CausalConv3d(w, w, 1, 1) for w in widths])
        self.dec_out = nn.ModuleList([CausalConv3d(w, w, 1, 1) for w in widths])
        for out in [*self.enc_out, *self.dec_out]:
            nn.init.zeros_(out.conv.weight)
            nn.init.zeros_(out.conv.bias)

    def forward(self, shown: torch.Tensor | None, like: torch.Tensor, up: int = 1,
                encoder: bool = True) -> tuple[list[torch.Tensor] | None, list[torch.Tensor]]:
        """-> (the encoder's features, or None when not `encoder`; the decoder's features). `like` (B, ·, ·, h, w):
        a tensor of this clip with h·up = H/p, for the batch, size, dtype and device."""
        b, h, w = like.shape[0], like.shape[-2] * up, like.shape[-1] * up
        if shown is None:
            x = like.new_zeros(b, self.in_channels, 1, h, w)
        else:
            last = shown.to(like.dtype)[:, :, -1:]  # (B, C, 1, H, W)
            x = rearrange(last, "b c k (h p) (w q) -> b (c k p q) 1 h w", p=self.patch, q=self.patch)
            x = torch.cat([x, x.new_ones(b, 1, 1, h, w)], dim=1)
        levels = [F.silu(self.conv_in(x))]
        for down in self.downs:
            levels.append(down(levels[-1]))
        enc = [out(x) for out, x in zip(self.enc_out, levels)] if encoder else None
        return enc, [out(x) for out, x in zip(self.dec_out, levels)]


class Encoder(nn.Module):
    """(B, C·τ·p², t, H/p, W/p) folded frames -> (B, D, t, h, w) latents; `ctx` (ContextNet) is added at each level."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        widths, kt = cfg.level_widths, cfg.temporal_kernel
        self.conv_in = CausalConv3d(cfg.channels * cfg.temporal_factor * cfg.patch**2, widths[0], kt)
        self.levels = nn.ModuleList()
        for i in range(cfg.num_down):
            blocks = [ResBlock(widths[i], widths[i], kt) for _ in range(cfg.depth)]
            self.levels.append(nn.ModuleList([*blocks, Downsample(widths[i], widths[i + 1])]))
        self.mid = nn.ModuleList([ResBlock(widths[-1], widths[-1], kt) for _ in range(cfg.latent_depth)])
        self.norm_out = FrameNorm(widths[-1])
        self.conv_out = CausalConv3d(widths[-1], cfg.latent_dim, 1, 1)

    def forward(self, x: torch.Tensor, state: StreamState | None = None, ctx: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = self.conv_in(x, state)
        if ctx is not None:
            x = x + ctx[0]
        for i, level in enumerate(self.levels):
            for block in level:
                x = block(x, state)
            if ctx is not None:  # the level ends with its downsampling: x is at level i + 1
                x = x + ctx[i + 1]
        for block in self.mid:
            x = block(x, state)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    """(B, D, t, h, w) quantized latents -> (B, C·τ·p², t, H/p, W/p) folded frames; `ctx` is added at each level."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        widths, kt = cfg.level_widths, cfg.temporal_kernel
        self.conv_in = CausalConv3d(cfg.latent_dim, widths[-1], kt)
        self.mid = nn.ModuleList([ResBlock(widths[-1], widths[-1], kt) for _ in range(cfg.latent_depth)])
        self.levels = nn.ModuleList()
        for i in reversed(range(cfg.num_down)):
            blocks = [ResBlock(widths[i], widths[i], kt) for _ in range(cfg.depth)]
            self.levels.append(nn.ModuleList([Upsample(widths[i + 1], widths[i]), *blocks]))
        self.norm_out = FrameNorm(widths[0])
        self.conv_out = CausalConv3d(widths[0], cfg.channels * cfg.temporal_factor * cfg.patch**2, 1)
        self.motion_out = None
        if cfg.warp:  # flow and gate of every output frame (warp.py); zero at the start: no motion, an even blend
            self.motion_out = CausalConv3d(widths[0], MOTION_CHANNELS * cfg.temporal_factor * cfg.patch**2, 1)
            nn.init.zeros_(self.motion_out.conv.weight)
            nn.init.zeros_(self.motion_out.conv.bias)

    def forward(self, z: torch.Tensor, state: StreamState | None = None,
                ctx: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> folded frames, and with `warp` the folded motion (B, 3·τ·p², t, H/p, W/p) (else None)."""
        x = self.conv_in(z, state)
        if ctx is not None:
            x = x + ctx[-1]
        for block in self.mid:
            x = block(x, state)
        for i, level in enumerate(self.levels):
            upsample, *blocks = level
            x = upsample(x, state)
            if ctx is not None:  # x is now at level num_down - 1 - i
                x = x + ctx[len(ctx) - 2 - i]
            for block in blocks:
                x = block(x, state)
        x = F.silu(self.norm_out(x))
        return self.conv_out(x), (self.motion_out(x) if self.motion_out is not None else None)


class Tokenizer(nn.Module):
    first_frames = 1  # the first latent frame makes one frame: clips have T = 1 + k·τ (arvid.tokenizer.frames)

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        if not isinstance(config, TokenizerConfig):
            raise ArvidError(f"Tokenizer needs a TokenizerConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = Quantizer(config)
        self.decoder = Decoder(config)
        self.context = ContextNet(config) if config.context else None
        self.encoder_frozen = False

    def freeze_encoder(self) -> "Tokenizer":
        """Train the decoder alone: the encoder and quantizer keep their weights (and VQ its codebook),
        so the codes of every video stay exactly what they were and a generator trained on them still fits."""
        if self.config.context:
            raise ArvidError("this tokenizer codes with context (its encoder reads the decoder's output), so training "
                             "its decoder alone would change its codes: train it whole (--train-part all)")
        self.encoder_frozen = True
        for p in [*self.encoder.parameters(), *self.quantizer.parameters()]:
            p.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "Tokenizer":
        super().train(mode)
        if self.encoder_frozen:  # eval mode: no VQ k-means init, EMA step or dead-code restart
            self.encoder.eval()
            self.quantizer.eval()
        return self

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of a clip of (T, H, W); ArvidError when T is not 1 + k·τ or H, W do not divide."""
        t = check_frames(frames, self.temporal_factor)
        s = self.spatial_factor
        fit = self.fitting_size(height, width)
        if fit != (height, width):
            raise ArvidError(f"frames of {height}x{width} do not fit this tokenizer: height and width must be "
                             f"multiples of its spatial factor {s} (e.g. {fit[0]}x{fit[1]})")
        return t, height // s, width // s

    def fitting_size(self, height: int, width: int) -> tuple[int, int]:
        """The nearest (height, width) at or below the given one (at least one token) that this tokenizer takes."""
        s = self.spatial_factor
        return max(s, height // s * s), max(s, width // s * s)

    def check_video(self, video: torch.Tensor) -> tuple[int, int, int]:
        if not torch.is_tensor(video) or video.ndim != 5 or not video.is_floating_point():
            raise ArvidError(f"expected a float video tensor (B, C, T, H, W), got "
                             f"{tuple(video.shape) if torch.is_tensor(video) else type(video).__name__}")
        if video.shape[1] != self.config.channels:
            raise ArvidError(f"video has {video.shape[1]} channels, this tokenizer takes {self.config.channels} "
                             f"(shape is (B, C, T, H, W))")
        return self.latent_shape(*video.shape[2:])

    def check_codes(self, codes: torch.Tensor) -> None:
        if not torch.is_tensor(codes) or codes.ndim != 4 or codes.is_floating_point():
            raise ArvidError(f"expected integer codes (B, t, h, w), got "
                             f"{tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ArvidError(f"codes must lie in [0, {self.codebook_size}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]: were they made by another tokenizer?")

    # ---- time/space folding --------------------------------------------------------------------
    def fold(self, video: torch.Tensor, pad_first: bool = True) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C·τ·p², t, H/p, W/p); with `pad_first`, τ-1 zero frames go in front."""
        tau, p = self.temporal_factor, self.config.patch
        if pad_first and tau > 1:
            video = F.pad(video, (0, 0, 0, 0, tau - 1, 0))
        return rearrange(video, "b c (t k) (h p) (w q) -> b (c k p q) t h w", k=tau, p=p, q=p)

    def unfold(self, x: torch.Tensor, drop_first: bool = True) -> torch.Tensor:
        """(B, C·τ·p², t, h', w') -> (B, C, t·τ - (τ-1 if drop_first), h'·p, w'·p)."""
        tau, p = self.temporal_factor, self.config.patch
        video = rearrange(x, "b (c k p q) t h w -> b c (t k) (h p) (w q)", k=tau, p=p, q=p)
        return video[:, :, tau - 1 :] if drop_first else video

    # ---- the passes ----------------------------------------------------------------------------
    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: video (B, C, T, H, W) -> (reconstruction (B, C, T, H, W), codes, aux loss)."""
        self.check_video(video)
        if self.config.context:  # closed loop, latent frame by latent frame, backpropagating through time
            keep = torch.is_grad_enabled()
            _, codes, aux, recon, _ = self.closed_loop(self.fold(video), StreamState(keep), StreamState(keep),
                                                       update=self.training)
            return recon, codes, aux
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            z = self.encoder(self.fold(video))
            zq, codes, aux = self.quantizer(z, update=self.training and not self.encoder_frozen)
        if self.encoder_frozen:
            zq, aux = zq.detach(), torch.zeros((), device=zq.device)
        return self.render(zq)[0], codes, aux

    @torch.no_grad()
    def encode(self, video: torch.Tensor, refine: int = 0) -> torch.Tensor:
        """video float (B, C, T, H, W) in [-1, 1] -> codes int64 (B, t, h, w).

        `refine` (context tokenizers): search that many gradient steps per latent frame for codes the decoder
        renders closer to the video (see `closed_loop`); the codes cost the same bits and decode the same way."""
        self.check_video(video)
        self.check_refine(refine)
        x = self.fold(video.to(self.device))
        if self.config.context:
            return self.closed_loop(x, StreamState(), StreamState(), update=False, refine=refine)[1]
        return self.quantizer(self.encoder(x), update=False)[1]

    def check_refine(self, refine: int) -> None:
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ArvidError(f"refine is a number of search steps per latent frame, an integer >= 0, got {refine!r}")
        if refine and not self.config.context:
            raise ArvidError("refining codes needs a tokenizer that codes with context (trained with --context): "
                             "only its encoder knows the frame the decoder shows before each latent frame")

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, t, h, w) -> video float32 (B, C, 1 + (t-1)·τ, H, W) in [-1, 1]."""
        self.check_codes(codes)
        return self.render(self.quantizer.codes_to_latent(codes.to(self.device)))[0].float().clamp(-1, 1)

    def render(self, zq: torch.Tensor, state: StreamState | None = None, prev: torch.Tensor | None = None,
               first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantized latents (B, D, t, h, w) -> (frames (B, C, T, H, W), what the next call needs: the last frame
        (B, C, H, W), or with context the last two (B, C, 2, H, W)). `first`: these latents start the clip (drop the
        τ-1 padding frames); `prev`: what the previous call returned."""
        if not self.config.context:
            return self._render(zq, state, prev, first)
        state = state if state is not None else StreamState()  # one latent frame at a time: the state carries time
        out = []
        for j in range(zq.shape[2]):
            frames, prev = self._render(zq[:, :, j : j + 1], state, prev, first and j == 0)
            out.append(frames)
        return torch.cat(out, dim=2), prev

    def _render(self, zq: torch.Tensor, state: StreamState | None, prev: torch.Tensor | None,
                first: bool, ctx: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.config.context
        if context and ctx is None:
            ctx = self.context(None if first else prev, zq, self.spatial_factor // self.config.patch, encoder=False)[1]
        x, motion = self.decoder(zq, state, ctx)
        frames = self.unfold(x, drop_first=first)
        if motion is not None:
            last = None if first else (prev[:, :, -1] if context else prev)
            frames, _ = render(frames, self.unfold(motion, drop_first=first), last)
        if not context:
            return frames, frames[:, :, -1]
        shown = frames if first else torch.cat([prev, frames], dim=2)
        if shown.shape[2] == 1:  # one frame so far: it counts as still
            shown = torch.cat([shown, shown], dim=2)
        return frames, shown[:, :, -2:]

    def closed_loop(self, x: torch.Tensor, enc_state: StreamState, dec_state: StreamState, prev: torch.Tensor | None = None,
                    first: bool = True, update: bool = False, refine: int = 0):
        """Encode folded frames (B, C·τ·p², t, H/p, W/p) with context, one latent frame at a time, decoding each as
        the decoder will, so the next one is coded against what the decoder actually shows.
        `prev`, `first`: as for `render`; the states carry the encoder's and the decoder's causal convolutions.
        `refine`: steps of encoder-side search per latent frame (`_refine`); 0 takes the encoder's latents as they are.
        -> (latents (B, D, t, h, w), codes (B, t, h, w), mean aux loss, frames (B, C, T, H, W), the last two frames
        shown (B, C, 2, H, W), for the next call)."""
        zs, codes, frames, aux = [], [], [], []
        for j in range(x.shape[2]):
            start = first and j == 0
            enc_ctx, dec_ctx = self.context(None if start else prev, x)
            z = self.encoder(x[:, :, j : j + 1], enc_state, enc_ctx)
            if refine:
                target = self.unfold(x[:, :, j : j + 1], drop_first=start)  # the frames this latent frame codes
                z = self._refine(z, target, refine, dec_state, prev, start, dec_ctx)
            zq, c, a = self.quantizer(z, update=update)
            f, prev = self._render(zq, dec_state, prev, start, dec_ctx)
            zs.append(z), codes.append(c), frames.append(f), aux.append(a)
        return torch.cat(zs, 2), torch.cat(codes, 1), torch.stack(aux).mean(), torch.cat(frames, 2), prev

    REFINE_LR = 0.05  # Adam's step on the latents; held-out clips (docs/tokenizer-eval): at 10 steps 0.1 beat 0.02
    # and 0.3, and at 30-60 steps 0.05 and 0.1 are level

    def _refine(self, z: torch.Tensor, target: torch.Tensor, steps: int, dec_state: StreamState,
                prev: torch.Tensor | None, first: bool, dec_ctx) -> torch.Tensor:
        """Encoder-side search, as a codec's encoder searches modes and motion: move the latent frame z
        (B, D, 1, h, w) by gradient steps through the quantizer (straight-through) and the decoder, which stays
        fixed, towards the frames it codes, `target` (B, C, τ or 1, H, W); return, per clip, the latents whose
        codes rendered closest (in MSE) among those tried, the encoder's own included, so this latent frame never
        renders worse than without the search. The decoder's state is copied for each try, never moved."""
        def error(latent):  # (B,) MSE of the frames the codes of `latent` render, clamped as `decode` shows them
            zq = self.quantizer(latent, update=False)[0]
            frames = self._render(zq, dec_state.copy(), prev, first, dec_ctx)[0]
            return (frames.float().clamp(-1, 1) - target.float()).pow(2).flatten(1).mean(1)

        best, trial = z.detach().clone(), z.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([trial], lr=self.REFINE_LR)
        with torch.enable_grad():
            err = error(trial)
            best_err = err.detach().clone()
            for _ in range(steps):
                (trial.grad,) = torch.autograd.grad(err.sum(), trial)  # the clips' errors are independent
                opt.step()
                err = error(trial)
                with torch.no_grad():
                    better = err < best_err
                    best[better], best_err[better] = trial[better], err[better]
        return best

    # ---- streaming -----------------------------------------------------------------------------
    def encoder_stream(self, batch_size: int = 1, refine: int = 0) -> EncoderStream:
        return EncoderStream(self, batch_size, refine)

    def decoder_stream(self, batch_size: int = 1) -> DecoderStream:
        return DecoderStream(self, batch_size)

    # ---- uint8 conveniences --------------------------------------------------------------------
    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, C) (or (T, H, W) grayscale) -> codes int64 (t, h, w)."""
        return self.encode(video_to_tensor(frames, self.config.channels))[0].cpu().numpy()

    def decode_to_video(self, codes) -> np.ndarray:
        """codes (t, h, w) (numpy or tensor) -> uint8 frames (T, H, W, C)."""
        codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
        return tensor_to_video(self.decode(codes[None].long()))[0]

    # ---- files ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write `path/` with model.safetensors and config.json (atomically)."""
        save_model(path, self, self.config.to_dict(), KIND)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = "cpu") -> "Tokenizer":
        """Load a tokenizer folder (or a training run folder) written by save_pretrained / arvid train."""
        files = load_model_files(path, KIND, cls.layout)  # config, header and weights checked against the layout
        tok = cls(TokenizerConfig.from_dict(files.config, source=str(files.folder / "config.json")))
        load_state(tok, files)
        return tok.to(resolve_device(device)).eval()

    @staticmethod
    def layout(config: dict | TokenizerConfig, source: str = "config") -> dict[str, torch.Tensor]:
        """The state dict of `Tokenizer(config)` without allocating its weights.

        The encoder and decoder are built on the meta device. The quantizer is built on the CPU when it is FSQ:
        vector-quantize-pytorch reads FSQ's buffers (`.item()`) while building it, which a meta tensor cannot
        do; its only tensors are the implicit codebook, bounded by the config (2^20 codes)."""
        if not isinstance(config, TokenizerConfig):
            if isinstance(config, dict) and config.get("kind") == "layered":
                raise ArvidError(f"{source}: this is a layered tokenizer: load it with arvid.tokenizer.load_tokenizer "
                                 "(or as part of a model folder)")
            config = TokenizerConfig.from_dict(config, source=source)
        parts = {"encoder": meta_layout(lambda: Encoder(config)), "decoder": meta_layout(lambda: Decoder(config))}
        if config.context:
            parts["context"] = meta_layout(lambda: ContextNet(config))
        with torch.device("cpu" if config.quantizer == "fsq" else "meta"):
            parts["quantizer"] = Quantizer(config).state_dict()
        return {f"{name}.{key}": t for name in ("encoder", "quantizer", "decoder", "context") if name in parts
                for key, t in parts[name].items()}


def video_to_tensor(frames: np.ndarray, channels: int | None = None) -> torch.Tensor:
    """uint8 (T, H, W, C) or (B, T, H, W, C) -> float32 (B, C, T, H, W) in [-1, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ArvidError(f"expected uint8 frames, got {frames.dtype}")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5:
        raise ArvidError(f"expected frames (T, H, W, C), got shape {frames.shape}")
    if channels is not None and frames.shape[-1] != channels:
        raise ArvidError(f"frames have {frames.shape[-1]} channels, the tokenizer takes {channels}")
    x = torch.from_numpy(frames.astype(np.float32)).div_(127.5).sub_(1.0)  # a copy: inputs may be read-only
    return rearrange(x, "b t h w c -> b c t h w")


def tensor_to_video(video: torch.Tensor) -> np.ndarray:
    """float (B, C, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, C)."""
    x = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return rearrange(x, "b c t h w -> b t h w c").cpu().numpy()
