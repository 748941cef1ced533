"""The layered tokenizer: appearance from one reference picture, motion as the positions of its layers.

    tok = load_tokenizer(folder)                 # a LayeredTokenizer when its config says "kind": "layered"
    codes = tok.encode(video)     # (B, 1, T, H, W) in [-1, 1], T = k·τ -> int64 (B, 1 + k, h, w)
    video = tok.decode(codes)     # -> (B, 1, (t - 1)·τ, H, W)

A clip is coded as one reference picture and, for every frame, where each of its layers is. The reference is the
frame among the first `lookahead` whose ink, as its codes decode, is most clearly in separate pieces; it is coded
with the h·w codes of a conv tokenizer (the reference coder, `arvid.tokenizer.model.Tokenizer`, whose decoder
was tuned to draw single frames) and decoded once per clip. Its ink is split into `layers` layers
(`arvid.tokenizer.layers`), and each frame is the layers moved to their positions and combined by max, the
way Moving MNIST frames are made: an object can move but is never redrawn, so it keeps its identity by
construction.

A position is the top-left corner of a layer's ink box (0 .. P-1, P = max(H, W); P means "absent"). The encoder
finds it by search: from the position the last two frames predict, every offset within `search_radius`, one
layer at a time with the others held, `search_passes` times, keeping the one whose frame is closest to the
input. Nothing decoded is fed back, and the encoder is causal after its lookahead.

Tokens, (1 + k, h, w) for T = k·τ frames: latent frame 0 is the reference's codes (0 .. R-1, R the reference
coder's codebook); each later latent frame holds τ = h·w / (2·layers) frames x layers x (y, x), as codes R + p.
The first latent frame makes no frame of its own (`first_frames == 0`; see `arvid.tokenizer.frames`).

`encode(video, exact_reference=True)` cuts the layers from the reference frame's own pixels instead of its
decoded codes (what `extend` does, so a continuation keeps its input's exact appearance); the decoder must then
be given the same pixels (`decode(codes, reference=...)`, `decoder_stream(B, reference=...)`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arvid.errors import ArvidError
from arvid.files import load_state, meta_layout, save_model
from arvid.tokenizer.config import TokenizerConfig
from arvid.tokenizer.frames import check_frames
from arvid.tokenizer.layers import InkRule, LayerNet, separation, split_layers
from arvid.tokenizer.model import KIND, Tokenizer, tensor_to_video, video_to_tensor
from arvid.utils.device import resolve_device

LAYERED = "layered"
CANDIDATES = 8  # frames the encoder codes and decodes to choose the reference from


@dataclass(frozen=True)
class LayeredConfig:
    reference: dict  # the reference coder's TokenizerConfig, as a dict
    size: tuple[int, int] = (64, 64)  # (H, W) of the frames it codes
    layers: int = 2  # K: layers cut from the reference
    lookahead: int = 16  # the reference is the clearest of this many first frames (at most τ)
    search_radius: int = 6  # pixels around the predicted position the encoder tries
    search_passes: int = 2  # rounds over the layers per frame
    ink: dict = field(default_factory=dict)  # InkRule fields that differ from its defaults
    notes: dict = field(default_factory=dict)  # how it was made: dataset, commands (not read by the model)
    kind: str = LAYERED

    def __post_init__(self):
        ref = self.reference_config
        H, W = self.size
        s = ref.spatial_factor
        if ref.channels != 1:
            raise ArvidError(f"a layered tokenizer codes one-channel (grayscale) frames, its reference coder has "
                             f"{ref.channels}")
        if H % s or W % s or H < s or W < s:
            raise ArvidError(f"size {H}x{W} must be a multiple of the reference coder's spatial factor {s}")
        if self.layers < 1:
            raise ArvidError(f"layers must be at least 1, got {self.layers}")
        if (H // s) * (W // s) % (2 * self.layers):
            raise ArvidError(f"{H // s}x{W // s} tokens per latent frame do not hold whole frames of {self.layers} "
                             f"layers x (y, x): choose layers dividing {(H // s) * (W // s) // 2}")
        if not 1 <= self.lookahead <= self.frames_per_latent:
            raise ArvidError(f"lookahead must be in [1, {self.frames_per_latent}], got {self.lookahead}")
        if self.search_radius < 0 or self.search_passes < 1:
            raise ArvidError("search_radius must be >= 0 and search_passes >= 1")
        InkRule(**self.ink)

    @functools.cached_property
    def reference_config(self) -> TokenizerConfig:  # parsed once: every size below derives from it
        return TokenizerConfig.from_dict(dict(self.reference), source="layered tokenizer's reference coder")

    @property
    def latent(self) -> tuple[int, int]:
        s = self.reference_config.spatial_factor
        return self.size[0] // s, self.size[1] // s

    @property
    def frames_per_latent(self) -> int:  # τ
        h, w = self.latent
        return h * w // (2 * self.layers)

    @property
    def positions(self) -> int:  # P: positions 0 .. P-1, P = absent
        return max(self.size)

    @property
    def reference_codes(self) -> int:  # R
        return self.reference_config.codebook_size

    @property
    def codebook_size(self) -> int:
        return self.reference_codes + self.positions + 1

    # what the rest of arvid reads from any tokenizer's config
    @property
    def channels(self) -> int:
        return 1

    @property
    def width(self) -> int:  # for memory estimates: the reference coder's width
        return self.reference_config.width

    @property
    def quantizer(self) -> str:
        return f"layered ({self.layers} layers over {self.reference_config.quantizer} reference codes)"

    @property
    def temporal_factor(self) -> int:
        return self.frames_per_latent

    @property
    def spatial_factor(self) -> int:
        return self.reference_config.spatial_factor

    def fingerprint(self) -> str:
        """A short hash of every setting that changes what codes mean (not the notes)."""
        d = self.to_dict()
        d.pop("notes")
        d["reference"] = {k: v for k, v in d["reference"].items() if k != "notes"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config.json") -> "LayeredConfig":
        if not isinstance(d, dict):
            raise ArvidError(f"{source}: expected a JSON object of tokenizer settings, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArvidError(f"{source}: unknown layered tokenizer setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        if "reference" not in d:
            raise ArvidError(f"{source}: a layered tokenizer needs its 'reference' coder's settings")
        d = dict(d)
        try:
            if "size" in d:
                if not isinstance(d["size"], (list, tuple)) or len(d["size"]) != 2 or not all(
                        isinstance(v, int) and not isinstance(v, bool) for v in d["size"]):
                    raise ValueError
                d["size"] = tuple(d["size"])
            for name in ("ink", "notes"):
                if name in d and not isinstance(d[name], dict):
                    raise ValueError
            if not isinstance(d["reference"], dict) or not d["reference"]:
                raise ValueError
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.get("ink", {}).values()):
                raise ValueError
            for name in ("layers", "lookahead", "search_radius", "search_passes"):
                if name in d:
                    if isinstance(d[name], bool) or int(d[name]) != d[name]:
                        raise ValueError
                    d[name] = int(d[name])
            if d.get("kind", LAYERED) != LAYERED:
                raise ValueError
            return cls(**d)
        except (TypeError, ValueError):
            raise ArvidError(f"{source}: malformed layered tokenizer settings (reference is an object of the reference "
                             f"coder's settings, size is [H, W] in whole pixels, layers, lookahead, search_radius and "
                             f"search_passes whole numbers, ink an object of numbers, notes an object)") from None
        except ArvidError as e:
            raise ArvidError(f"{source}: {e}") from None


def is_layered(config: dict) -> bool:
    return isinstance(config, dict) and config.get("kind") == LAYERED


# ---------------------------------------------------------------------------------------------- layers and moving


@dataclass
class Layers:
    """A batch of references cut into layers: each layer's ink in its box, and where the box is."""

    crops: torch.Tensor  # float (B, K, hm, wm) in [0, 255], zero outside each layer's own box size
    box: torch.Tensor  # int64 (B, K, 2): top-left of the box in the reference
    size: torch.Tensor  # int64 (B, K, 2): the box's (h, w); (0, 0) for an empty layer
    live: torch.Tensor  # bool (B, K): the layer holds ink

    @property
    def batch(self) -> int:
        return self.crops.shape[0]


def cut_layers(refs: np.ndarray, k: int, net: LayerNet | None, rule: InkRule) -> Layers:
    """refs float (B, H, W) in [0, 255] -> their layers."""
    B = len(refs)
    pieces, box, size = [], np.zeros((B, k, 2), np.int64), np.zeros((B, k, 2), np.int64)
    for b in range(B):
        slot = split_layers(refs[b], k, net, rule)
        for j in range(k):
            m = slot == j + 1
            if m.sum() < 4:  # a few stray pixels are no layer
                pieces.append(None)
                continue
            ys, xs = np.nonzero(m)
            y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
            pieces.append(np.where(m, refs[b], 0)[y0:y1, x0:x1])
            box[b, j], size[b, j] = (y0, x0), (y1 - y0, x1 - x0)
    hm, wm = max(1, int(size[..., 0].max())), max(1, int(size[..., 1].max()))
    crops = np.zeros((B, k, hm, wm), np.float32)
    for i, p in enumerate(pieces):
        if p is not None:
            crops[i // k, i % k, :p.shape[0], :p.shape[1]] = p
    live = size[..., 0] > 0
    return Layers(torch.from_numpy(crops), torch.from_numpy(box), torch.from_numpy(size), torch.from_numpy(live))


def _place(canvas: torch.Tensor, crop: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> None:
    """Max each crop (N, hm, wm) into canvas (N, Hc, Wc) with its top-left at (y, x) (N,), in place."""
    N, hm, wm = crop.shape
    Wc = canvas.shape[2]
    rows = y[:, None, None] + torch.arange(hm, device=y.device)[None, :, None]  # (N, hm, 1)
    cols = x[:, None, None] + torch.arange(wm, device=x.device)[None, None, :]  # (N, 1, wm)
    index = (rows * Wc + cols).reshape(N, -1)
    canvas.view(N, -1).scatter_reduce_(1, index, crop.reshape(N, -1), reduce="amax")


def hold_inside(layers: Layers, pos: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Positions (B, ..., K, 2) clamped so every layer's box stays inside the frame."""
    size = layers.size.view(layers.batch, *([1] * (pos.ndim - 3)), *layers.size.shape[1:])
    limit = torch.tensor([H, W], device=pos.device) - size.to(pos.device)
    return torch.minimum(pos.clamp_min(0), limit.clamp_min(0))


def render(layers: Layers, pos: torch.Tensor, H: int, W: int, skip: int | None = None) -> torch.Tensor:
    """Frames float (B, F, H, W) in [0, 255]: the layers moved to positions (B, F, K, 2) and combined by max.
    A position that would push a layer's box out of the frame is held at the edge. `skip`: leave out layer k."""
    B, Fr, K, _ = pos.shape
    _, _, hm, wm = layers.crops.shape
    pos = hold_inside(layers, pos, H, W)
    canvas = layers.crops.new_zeros(B * Fr, H + hm, W + wm)
    for k in range(K):
        if k == skip:
            continue
        crop = layers.crops[:, k, None].expand(B, Fr, hm, wm).reshape(B * Fr, hm, wm)
        _place(canvas, crop, pos[..., k, 0].reshape(-1), pos[..., k, 1].reshape(-1))
    return canvas[:, :H, :W].reshape(B, Fr, H, W)


def search_frame(layers: Layers, target: torch.Tensor, guess: torch.Tensor, radius: int, passes: int) -> torch.Tensor:
    """Positions (B, K, 2) of the layers that best draw target frames (B, H, W) (squared error), searched one layer
    at a time within `radius` of `guess` (B, K, 2), the others held; absent layers stay absent (P)."""
    B, H, W = target.shape
    K = layers.crops.shape[1]
    _, _, hm, wm = layers.crops.shape
    d = torch.arange(-radius, radius + 1, device=target.device)
    off = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)  # (C, 2)
    off = torch.cat([off.new_zeros(1, 2), off[(off != 0).any(1)]])  # the guess first: ties keep it
    cur = hold_inside(layers, guess[:, None], H, W)[:, 0].clone()
    T = F.pad(target, (0, wm, 0, hm))  # (B, H + hm, W + wm)
    rows = torch.arange(hm, device=target.device)
    cols = torch.arange(wm, device=target.device)
    for step in range(passes):
        if step == 1:  # later passes refine near the first's answer (they matter where layers overlap)
            off = off[(off.abs() <= 2).all(1)]
        for k in range(K):
            live = layers.live[:, k]
            if not bool(live.any()):
                continue
            others = F.pad(render(layers, cur[:, None], H, W, skip=k)[:, 0], (0, wm, 0, hm))
            limit = (torch.tensor([H, W], device=cur.device) - layers.size[:, k].to(cur.device)).clamp_min(0)  # (B, 2)
            cand = torch.minimum((cur[:, None, k] + off[None]).clamp_min(0), limit[:, None])  # (B, C, 2), held inside
            index = ((cand[..., 0, None, None] + rows[:, None]) * (W + wm)
                     + cand[..., 1, None, None] + cols[None, :]).reshape(B, -1)  # (B, C·hm·wm)
            o = others.reshape(B, -1).gather(1, index).view(B, len(off), hm, wm)
            t = T.reshape(B, -1).gather(1, index).view(B, len(off), hm, wm)
            layer = layers.crops[:, k, None]  # (B, 1, hm, wm)
            cost = ((torch.maximum(o, layer) - t) ** 2 - (o - t) ** 2).sum((2, 3))  # (B, C): the change it makes
            best = cand[torch.arange(B), cost.argmin(1)]
            cur[:, k] = torch.where(live[:, None], best, cur[:, k])
    P = max(H, W)
    return torch.where(layers.live[..., None], cur, torch.full_like(cur, P))


# ------------------------------------------------------------------------------------------------------ the model


class LayeredTokenizer(nn.Module):
    """See the module docstring. `reference` is the conv tokenizer that codes the reference picture, `layer_net`
    the U-Net that splits a reference whose ink is one piece (None with one layer)."""

    first_frames = 0  # the first latent frame (the reference) makes no frame: clips have T = k·τ

    def __init__(self, config: LayeredConfig):
        super().__init__()
        if not isinstance(config, LayeredConfig):
            raise ArvidError(f"LayeredTokenizer needs a LayeredConfig, got {type(config).__name__}")
        self.config = config
        self.reference = Tokenizer(config.reference_config)
        self.layer_net = LayerNet(config.layers) if config.layers > 1 else None
        self.rule = InkRule(**config.ink)

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def temporal_factor(self) -> int:
        return self.config.frames_per_latent

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of a clip of (T, H, W); ArvidError when T is not k·τ or the frames are not its size."""
        t = check_frames(frames, self.temporal_factor, first=0)
        if (height, width) != tuple(self.config.size):
            H, W = self.config.size
            raise ArvidError(f"frames of {height}x{width} do not fit this layered tokenizer: it codes {H}x{W} frames "
                             f"(resize the video to {H}x{W})")
        return (t, *self.config.latent)

    def fitting_size(self, height: int, width: int) -> tuple[int, int]:
        return tuple(self.config.size)

    def check_video(self, video: torch.Tensor) -> tuple[int, int, int]:
        if not torch.is_tensor(video) or video.ndim != 5 or not video.is_floating_point():
            raise ArvidError(f"expected a float video tensor (B, C, T, H, W), got "
                             f"{tuple(video.shape) if torch.is_tensor(video) else type(video).__name__}")
        if video.shape[1] != 1:
            raise ArvidError(f"video has {video.shape[1]} channels, this tokenizer takes 1 (shape is (B, C, T, H, W))")
        return self.latent_shape(*video.shape[2:])

    def check_codes(self, codes: torch.Tensor) -> None:
        if not torch.is_tensor(codes) or codes.ndim != 4 or codes.is_floating_point():
            raise ArvidError(f"expected integer codes (B, t, h, w), got "
                             f"{tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__}")
        if tuple(codes.shape[2:]) != self.config.latent:
            raise ArvidError(f"codes of {codes.shape[2]}x{codes.shape[3]} tokens per latent frame: this tokenizer's "
                             f"are {self.config.latent[0]}x{self.config.latent[1]}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ArvidError(f"codes must lie in [0, {self.codebook_size}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]: were they made by another tokenizer?")

    def check_refine(self, refine: int) -> None:
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ArvidError(f"refine is a number of search steps per latent frame, an integer >= 0, got {refine!r}")
        if refine:
            raise ArvidError("refining codes needs a tokenizer that codes with context (trained with --context); "
                             "a layered tokenizer's encoder already searches each position")

    # ---- the reference ------------------------------------------------------------------------
    @torch.no_grad()
    def reference_codes(self, frames: torch.Tensor) -> torch.Tensor:
        """frames float (N, H, W) in [0, 255] -> the reference coder's codes (N, h, w)."""
        x = (frames / 127.5 - 1)[:, None, None].to(self.device)  # (N, 1, 1, H, W)
        return self.reference.encode(x)[:, 0]

    @torch.no_grad()
    def reference_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (N, h, w) -> the reference pictures float (N, H, W) in [0, 255], on 8-bit levels."""
        R = self.config.reference_codes
        codes = torch.where(codes < R, codes, torch.zeros_like(codes))  # a position code drawn here: no ink
        y = self.reference.decode(codes[:, None].to(self.device))[:, 0, 0]
        return ((y.clamp(-1, 1) + 1) * 127.5).round().float().cpu()

    def layers_of(self, pictures: torch.Tensor) -> Layers:
        """Reference pictures float (B, H, W) in [0, 255] -> their layers."""
        return cut_layers(pictures.round().cpu().numpy(), self.config.layers, self.layer_net, self.rule)

    # ---- whole clips ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor, refine: int = 0, exact_reference: bool = False) -> torch.Tensor:
        """video float (B, 1, T, H, W) in [-1, 1], T = k·τ -> codes int64 (B, 1 + k, h, w)."""
        self.check_video(video)
        self.check_refine(refine)
        return self.encoder_stream(video.shape[0], exact_reference=exact_reference).push(video)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, t, h, w) -> video float32 (B, 1, (t - 1)·τ, H, W) in [-1, 1]. `reference`: the pictures
        (B, H, W) in [0, 255] to cut the layers from instead of the decoded codes (see `encode`)."""
        self.check_codes(codes)
        return self.decoder_stream(codes.shape[0], reference=reference).push(codes)

    def encoder_stream(self, batch_size: int = 1, refine: int = 0, exact_reference: bool = False):
        self.check_refine(refine)
        return LayeredEncoderStream(self, batch_size, exact_reference)

    def decoder_stream(self, batch_size: int = 1, reference: torch.Tensor | None = None):
        return LayeredDecoderStream(self, batch_size, reference)

    # ---- uint8 conveniences --------------------------------------------------------------------
    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 1) (or (T, H, W)) -> codes int64 (t, h, w)."""
        return self.encode(video_to_tensor(frames, 1))[0].cpu().numpy()

    def decode_to_video(self, codes) -> np.ndarray:
        """codes (t, h, w) -> uint8 frames (T, H, W, 1)."""
        codes = torch.as_tensor(np.asarray(codes) if not torch.is_tensor(codes) else codes)
        return tensor_to_video(self.decode(codes[None].long()))[0]

    # ---- files ---------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        save_model(path, self, self.config.to_dict(), KIND)

    @classmethod
    def from_files(cls, files, device=None) -> "LayeredTokenizer":
        tok = cls(LayeredConfig.from_dict(files.config, source=str(files.folder / "config.json")))
        load_state(tok, files)
        return tok.to(resolve_device(device)).eval()

    @staticmethod
    def layout(config: dict | LayeredConfig, source: str = "config") -> dict[str, torch.Tensor]:
        if not isinstance(config, LayeredConfig):
            config = LayeredConfig.from_dict(config, source=source)
        out = {f"reference.{k}": v for k, v in Tokenizer.layout(config.reference_config).items()}
        if config.layers > 1:
            out.update({f"layer_net.{k}": v for k, v in meta_layout(lambda: LayerNet(config.layers)).items()})
        return out


def _to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """(B, 1, n, H, W) in [-1, 1] -> (B, n, H, W) in [0, 255] on the CPU."""
    return ((frames[:, 0].float().clamp(-1, 1) + 1) * 127.5).cpu()


class LayeredEncoderStream:
    """Frames in, codes out, in constant memory. The first push that completes τ frames gives the reference's latent
    frame and the first latent frame of positions; every τ frames after give one more."""

    def __init__(self, tokenizer: LayeredTokenizer, batch_size: int = 1, exact_reference: bool = False):
        self.tok, self.batch_size, self.exact = tokenizer, int(batch_size), bool(exact_reference)
        self.layers: Layers | None = None
        self.reference: torch.Tensor | None = None  # (B, H, W) in [0, 255]: what the decoder must cut the layers from
        self.pending = None  # (B, n, H, W) frames before the reference is chosen
        self.recent: torch.Tensor | None = None  # (B, 2, K, 2) positions of the last two frames
        self.queue: list[torch.Tensor] = []  # positions (B, K, 2) not yet in a latent frame
        self.frames_in = 0

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 1, n, H, W) in [-1, 1] -> codes (B, t_new, h, w) of the latent frames they complete."""
        cfg = self.tok.config
        self._check(frames)
        px = _to_pixels(frames)
        self.frames_in += px.shape[1]
        out = []
        if self.layers is None:
            self.pending = px if self.pending is None else torch.cat([self.pending, px], 1)
            if self.pending.shape[1] < cfg.frames_per_latent:
                return self._codes([])
            out.append(self._start(self.pending))
            px, self.pending = self.pending[:, cfg.frames_per_latent:], None
        for j in range(px.shape[1]):
            self._step(px[:, j])
        return self._codes(out)

    def partial_codes(self) -> torch.Tensor:
        """Codes (B, n) of the frames pushed since the last whole latent frame: the first n = frames·K·2 tokens of
        the next one (0 frames: (B, 0))."""
        if not self.queue:
            return torch.zeros(self.batch_size, 0, dtype=torch.long)
        return (self.tok.config.reference_codes + torch.stack(self.queue, 1)).reshape(self.batch_size, -1)

    def _codes(self, out: list[torch.Tensor]) -> torch.Tensor:
        cfg = self.tok.config
        tau, (h, w) = cfg.frames_per_latent, cfg.latent
        while len(self.queue) >= tau:
            pos = torch.stack(self.queue[:tau], 1)  # (B, τ, K, 2)
            self.queue = self.queue[tau:]
            out.append((cfg.reference_codes + pos).reshape(self.batch_size, 1, h, w))
        if not out:
            return torch.zeros(self.batch_size, 0, h, w, dtype=torch.long)
        return torch.cat(out, 1)

    def _start(self, frames: torch.Tensor) -> torch.Tensor:
        """Choose the reference among the first frames (B, ≥τ, H, W), cut it, position the first τ frames."""
        tok, cfg = self.tok, self.tok.config
        B, H, W = frames.shape[0], *cfg.size
        n, m = cfg.lookahead, min(CANDIDATES, cfg.lookahead)
        # the m frames whose own ink is most clearly in pieces are coded and decoded; the clearest decoded one wins
        seen = np.array([[separation(f, tok.rule) for f in clip] for clip in frames[:, :n].round().numpy()])  # (B, n)
        cand = torch.from_numpy(np.argsort(-seen, axis=1, kind="stable")[:, :m].copy())  # (B, m)
        pick = torch.arange(B)
        codes = tok.reference_codes(frames[pick[:, None], cand].reshape(B * m, H, W)).view(B, m, *cfg.latent)
        shown = tok.reference_pixels(codes.reshape(B * m, *cfg.latent)).view(B, m, H, W)
        score = np.array([[separation(f, tok.rule) for f in clip] for clip in shown.numpy()])  # (B, m)
        best = score.argmax(1)  # the most separate as input among the equally clear; frame 0 when none is separate
        none = score.max(1) == 0
        r = np.where(none, 0, cand.numpy()[np.arange(B), best])
        if none.any():  # code frame 0 itself
            zero = torch.from_numpy(np.flatnonzero(none))
            codes[zero, 0] = tok.reference_codes(frames[zero, 0])
            shown[zero, 0] = tok.reference_pixels(codes[zero, 0])
            best = np.where(none, 0, best)
        codes, shown = codes[pick, torch.from_numpy(best)], shown[pick, torch.from_numpy(best)]  # (B, h, w), (B, H, W)
        self.reference = frames[pick, torch.from_numpy(r)].round() if self.exact else shown
        self.layers = tok.layers_of(self.reference)
        tau, P = cfg.frames_per_latent, cfg.positions
        pos = torch.full((B, tau, cfg.layers, 2), P, dtype=torch.long)
        start = torch.where(self.layers.live[..., None], self.layers.box, torch.full_like(self.layers.box, P))
        for b in range(B):  # frame r is the reference itself: its boxes
            pos[b, r[b]] = start[b]
        # forward from each clip's reference to frame τ-1, then back to frame 0, a frame index at a time
        for t in range(1, tau):
            fwd = torch.from_numpy(r + t)
            ok = fwd < tau
            if ok.any():
                idx = pick[ok]
                f1, f2 = fwd[ok] - 1, (fwd[ok] - 2).clamp_min(torch.from_numpy(r)[ok])
                pos[idx, fwd[ok]] = self._search(idx, frames[idx, fwd[ok]], pos[idx, f1], pos[idx, f2])
            back = torch.from_numpy(r - t)
            ok = back >= 0
            if ok.any():
                idx = pick[ok]
                f1, f2 = back[ok] + 1, (back[ok] + 2).clamp_max(torch.from_numpy(r)[ok])
                pos[idx, back[ok]] = self._search(idx, frames[idx, back[ok]], pos[idx, f1], pos[idx, f2])
        self.queue = list(pos.unbind(1))
        self.recent = pos[:, [max(tau - 2, 0), tau - 1]]
        return codes[:, None].cpu()  # (B, 1, h, w), on the CPU like the positions it goes out with

    def _search(self, idx: torch.Tensor | None, target: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        """Positions (b, K, 2) for the clips idx (None: all): predicted from the last two (p1 + (p1 - p2)), then
        searched."""
        cfg = self.tok.config
        lay = self.layers if idx is None else Layers(*(getattr(self.layers, f)[idx] for f in ("crops", "box", "size",
                                                                                              "live")))
        return search_frame(lay, target, 2 * p1 - p2, cfg.search_radius, cfg.search_passes)

    def _step(self, frame: torch.Tensor) -> None:
        pos = self._search(None, frame, self.recent[:, 1], self.recent[:, 0])
        self.queue.append(pos)
        self.recent = torch.stack([self.recent[:, 1], pos], 1)

    def _check(self, frames: torch.Tensor) -> None:
        if not torch.is_tensor(frames) or frames.ndim != 5 or frames.shape[0] != self.batch_size:
            raise ArvidError(f"push frames (B={self.batch_size}, C, n, H, W), got "
                             f"{tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__}")
        if frames.shape[1] != 1:
            raise ArvidError(f"frames have {frames.shape[1]} channels, the tokenizer takes 1")
        self.tok.latent_shape(self.tok.temporal_factor, *frames.shape[3:])


class LayeredDecoderStream:
    """Codes in, frames out: the first latent frame is the reference (no frame), every later one τ frames.

    A generated code of the wrong kind is mended, never refused: a position code where a reference code belongs
    draws no ink there, and a reference code (or "absent") where a present layer's position belongs keeps the
    layer where it was. `mended` counts them."""

    def __init__(self, tokenizer: LayeredTokenizer, batch_size: int = 1, reference: torch.Tensor | None = None):
        self.tok, self.batch_size = tokenizer, int(batch_size)
        H, W = tokenizer.config.size
        if reference is not None:
            reference = torch.as_tensor(reference, dtype=torch.float32)
            if reference.shape != (self.batch_size, H, W):
                raise ArvidError(f"reference pictures must be (B={self.batch_size}, {H}, {W}) in [0, 255], got "
                                 f"{tuple(reference.shape)}")
        self.given = reference
        self.layers: Layers | None = None
        self.last: torch.Tensor | None = None  # (B, K, 2) positions of the last frame given out
        self.latent_in = 0
        self.mended = 0

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, t_new, h, w) -> frames float32 (B, 1, n, H, W) in [-1, 1]; n = τ·t_new (- τ at the start)."""
        tok, cfg = self.tok, self.tok.config
        H, W = cfg.size
        if not torch.is_tensor(codes) or codes.ndim != 4 or codes.shape[0] != self.batch_size:
            raise ArvidError(f"push codes (B={self.batch_size}, t, h, w), got "
                             f"{tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__}")
        if codes.shape[1] == 0:
            return torch.zeros(self.batch_size, 1, 0, H, W)
        tok.check_codes(codes)
        codes = codes.cpu()
        if self.layers is None:
            first = codes[:, 0]
            self.mended += int((first >= cfg.reference_codes).sum())
            picture = self.given if self.given is not None else tok.reference_pixels(first)
            self.layers = tok.layers_of(picture)
            P = cfg.positions
            self.last = torch.where(self.layers.live[..., None], self.layers.box, torch.full_like(self.layers.box, P))
            codes = codes[:, 1:]
        self.latent_in += codes.shape[1]
        if codes.shape[1] == 0:
            return torch.zeros(self.batch_size, 1, 0, H, W)
        pos = (codes.reshape(self.batch_size, -1, cfg.layers, 2) - cfg.reference_codes)  # (B, n, K, 2)
        bad = (pos < 0) | (pos >= cfg.positions)
        bad = bad.any(-1) & self.layers.live[:, None]  # (B, n, K): no position for a present layer
        self.mended += int(bad.sum())
        frames = []
        for f in range(pos.shape[1]):
            self.last = torch.where(bad[:, f, :, None], self.last, pos[:, f])
            frames.append(self.last)
        pos = torch.stack(frames, 1)
        video = render(self.layers, pos.clamp(0, cfg.positions - 1), H, W)  # (B, n, H, W) in [0, 255]
        return (video.round() / 127.5 - 1)[:, None].clamp(-1, 1)


__all__ = ["LAYERED", "LayeredConfig", "LayeredDecoderStream", "LayeredEncoderStream", "LayeredTokenizer", "Layers",
           "cut_layers", "is_layered", "render", "search_frame"]
