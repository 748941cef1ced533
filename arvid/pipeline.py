"""The generation pipeline: a tokenizer and a generator, loaded together, turned into video.

    from arvid import Arvid
    model = Arvid.from_pretrained()                       # the default model shipped in the package
    clip = model.generate(64, seed=0, labels=[3, 7])      # uint8 (B, 64, H, W, C)
    longer = model.extend(clip[0], 32)                    # the input's 64 frames, then 32 new ones
    for frames in model.stream(1000):                     # uint8 (B, H, W, C), as soon as decoded
        ...

Tokens flow straight from the generator into the tokenizer's streaming decoder: generated pixels are
never re-encoded, so long clips do not drift through a pixel round trip, and both the KV cache and
the decoder state have fixed sizes (memory does not grow with the clip).

Frame counts. The tokenizer turns the first frame into one latent frame and every τ frames after it
into one more. `generate(N)` samples 1 + ceil((N - 1) / τ) latent frames and returns exactly N frames.
`extend(video, N)` accepts any number of input frames: it tokenizes the last 1 + k·τ of them (so the
tokens end exactly at the last input frame), prefills the cache with the last W latent frames, and
returns the input frames themselves followed by exactly N new ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arvid.errors import ArvidError
from arvid.utils import resolve_device

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights" / "default"
ENCODE_CHUNK = 32  # frames pushed into the streaming encoder at a time when tokenizing an input clip


SAMPLING_FILE = "sampling.json"  # a model folder's recommended decoding settings (optional)
SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "guidance", "history_guidance")


@dataclass
class SamplingOptions:
    """How tokens are drawn. Passed through to `arvid.generator.generate`.

    A setting left at None takes the model's recommended value (its folder's sampling.json, measured by
    `arvid eval generation`), else the neutral one: temperature 1, no top-k, top-p or min-p, no guidance.
    Guidance applies only with labels; top_p=1, min_p=0, guidance=1 and history_guidance=1 switch them
    off explicitly."""

    seed: int = 0
    temperature: float | None = None  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    labels: list[int] | None = None  # one label per object (e.g. the two digits), or None: unconditional
    guidance: float | None = None  # classifier-free guidance scale (1: none)
    batch: int = 1
    min_p: float | None = None  # keep tokens at least min_p times as likely as the likeliest (0: off)
    history_guidance: float | None = None  # guidance against each frame without the clip's past (1: none)

    def __post_init__(self) -> None:
        from arvid.generator.sampler import check_settings

        check_settings(self)  # a bad value fails here, before a model is loaded or a frame is made
        if self.batch < 1:
            raise ArvidError(f"batch must be at least 1, got {self.batch}")

    def generate_kwargs(self, defaults: dict | None = None) -> dict:
        """Keyword arguments of `generate`, with unset settings taken from `defaults` (a model's sampling.json)."""
        defaults = defaults or {}
        pick = {k: getattr(self, k) if getattr(self, k) is not None else defaults.get(k) for k in SAMPLING_KEYS}
        temperature = 1.0 if pick["temperature"] is None else pick["temperature"]
        top_p = None if pick["top_p"] == 1 else pick["top_p"]
        min_p = pick["min_p"] or None  # 0: off
        history = None if pick["history_guidance"] == 1 else pick["history_guidance"]
        guidance = pick["guidance"] if self.labels is not None else self.guidance  # the model's only with labels
        if guidance == 1:  # g = 1 is the conditional distribution itself: skip the unconditional pass
            guidance = None
        return dict(seed=self.seed, temperature=temperature, top_k=pick["top_k"], top_p=top_p, min_p=min_p,
                    labels=self.labels, guidance=guidance, history_guidance=history)


def load_sampling(path: Path) -> dict:
    """A model folder's sampling.json -> {setting: value}, every key and value checked (ArvidError)."""
    import json

    from arvid.generator.sampler import Sampling

    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArvidError(f"{path}: cannot read sampling settings ({e.__class__.__name__}: {e})") from None
    if not isinstance(d, dict) or set(d) - set(SAMPLING_KEYS):
        raise ArvidError(f"{path}: expected a JSON object with some of {', '.join(SAMPLING_KEYS)}, got "
                         f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
    for k, v in d.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or (k == "top_k" and not isinstance(v, int))):
            raise ArvidError(f"{path}: {k} must be a {'whole ' if k == 'top_k' else ''}number, got {v!r}")
    try:
        Sampling(**{"temperature": 1.0, **d})  # the sampler's own range checks
    except ArvidError as e:
        raise ArvidError(f"{path}: {e}") from None
    return d


@dataclass
class Prepared:
    """An input clip made ready for `extend`: fitted frames and the tokens of its tail."""

    frames: np.ndarray  # uint8 (T, H, W, C) at the model's resolution
    context: torch.Tensor  # int64 (B, t, h, w): the last W latent frames (or fewer)
    notes: list[str] = field(default_factory=list)  # what was changed, said clearly


class Arvid:
    """A tokenizer and a generator that belong together (same codebook, same latent grid)."""

    def __init__(self, tokenizer, generator, device: str | torch.device | None = None, sampling: dict | None = None):
        self.device = resolve_device(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.generator = generator.to(self.device).eval()
        check_pair(self.tokenizer, self.generator)
        self.sampling = dict(sampling or {})  # recommended decoding settings: what SamplingOptions leaves unset

    # ---- loading and saving ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> "Arvid":
        """Load `path/tokenizer` and `path/generator`; with no path, the default model in the package."""
        from arvid.generator import Generator
        from arvid.tokenizer import Tokenizer

        root = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if path is None and not root.is_dir():
            raise ArvidError(f"this build of arvid ships no default model ({root} is missing): "
                             "pass --model PATH to a folder with tokenizer/ and generator/")
        if not root.is_dir():
            raise ArvidError(f"model folder {root} does not exist")
        for part in ("tokenizer", "generator"):
            if not (root / part).is_dir():
                raise ArvidError(f"model folder {root} has no {part}/ subfolder: a model folder holds "
                                 "tokenizer/ and generator/ (as written by Arvid.save_pretrained)")
        sampling = load_sampling(root / SAMPLING_FILE) if (root / SAMPLING_FILE).exists() else None
        return cls(Tokenizer.from_pretrained(root / "tokenizer", device="cpu"),
                   Generator.from_pretrained(root / "generator", device="cpu"), device, sampling)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(root / "tokenizer")
        self.generator.save_pretrained(root / "generator")
        if self.sampling:
            import json

            from arvid.utils.atomic import atomic_write_text

            atomic_write_text(root / SAMPLING_FILE, json.dumps(self.sampling, indent=1) + "\n")

    # ---- what the model makes -------------------------------------------------------------------------
    @property
    def resolution(self) -> tuple[int, int]:  # (H, W)
        cfg = self.generator.config
        return cfg.latent_h * self.tokenizer.spatial_factor, cfg.latent_w * self.tokenizer.spatial_factor

    @property
    def channels(self) -> int:
        return self.tokenizer.config.channels

    @property
    def temporal_factor(self) -> int:  # τ
        return self.tokenizer.temporal_factor

    @property
    def fps(self) -> float:
        return float(getattr(self.tokenizer.config, "fps", 8.0) or 8.0)

    def latent_frames_for(self, num_frames: int, *, after_context: bool) -> int:
        """Latent frames to sample for `num_frames` new frames (after a context: τ frames each)."""
        tau = self.temporal_factor
        if after_context:
            return math.ceil(num_frames / tau)
        return 1 + math.ceil((num_frames - 1) / tau)

    def check_options(self, opts: SamplingOptions) -> None:
        """ArvidError now, before any work, if `opts` (with this model's recommended settings) cannot run on this
        model: labels of the wrong count or range, or guidance without labels."""
        from arvid.generator.model import check_labels

        kw = opts.generate_kwargs(self.sampling)
        check_labels(self.generator.config, kw["labels"], opts.batch)
        if kw["guidance"] is not None and kw["labels"] is None:
            raise ArvidError("guidance needs labels: give labels, or no guidance scale")

    # ---- the three uses -------------------------------------------------------------------------------
    def stream(self, num_frames: int, video: np.ndarray | None = None, options: SamplingOptions | None = None,
               **kwargs) -> Iterator[np.ndarray]:
        """Yield new frames, uint8 (B, H, W, C), as soon as they are decoded: exactly `num_frames` of them.

        With `video` (uint8 (T, H, W, C), any T >= 1), continue it; otherwise start a new clip.
        """
        opts = _options(options, kwargs)
        _check_count(num_frames)
        self.check_options(opts)
        prepared = self.prepare(video, opts.batch) if video is not None else None
        yield from self._stream(num_frames, prepared, opts)

    def generate(self, num_frames: int, options: SamplingOptions | None = None, **kwargs) -> np.ndarray:
        """A new clip of exactly `num_frames` frames: uint8 (B, num_frames, H, W, C)."""
        return np.stack(list(self.stream(num_frames, None, options, **kwargs)), axis=1)

    def extend(self, video: np.ndarray, num_frames: int, options: SamplingOptions | None = None,
               **kwargs) -> np.ndarray:
        """The input clip followed by `num_frames` new frames: uint8 (B, T_in + num_frames, H, W, C)."""
        opts = _options(options, kwargs)
        _check_count(num_frames)
        self.check_options(opts)
        prepared = self.prepare(video, opts.batch)
        return join_input(prepared, np.stack(list(self._stream(num_frames, prepared, opts)), axis=1))

    # ---- the parts -------------------------------------------------------------------------------------
    def fit(self, video: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Fit frames to the model's resolution and channels (resize the short side, centre-crop)."""
        from arvid.video import fit_video

        frames = np.asarray(video)
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
            raise ArvidError(f"expected a uint8 video (T, H, W, C), got {frames.dtype} of shape {frames.shape}")
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.shape[0] < 1:
            raise ArvidError("the input video has no frames")
        notes = []
        H, W = self.resolution
        if frames.shape[1:3] != (H, W):
            notes.append(f"resized {frames.shape[2]}x{frames.shape[1]} to {W}x{H} "
                         "(short side scaled, then centre-cropped) to match the model")
            frames = fit_video(frames, (H, W))
        C = self.channels
        if frames.shape[-1] != C:
            if C == 1:
                notes.append("converted colour to grayscale: the model makes 1-channel video")
                frames = np.round(frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
                frames = frames.clip(0, 255).astype(np.uint8)[..., None]
            else:
                notes.append("repeated the gray channel to RGB: the model makes 3-channel video")
                frames = np.repeat(frames[..., :1], 3, axis=-1)
        return np.ascontiguousarray(frames), notes

    def prepare(self, video: np.ndarray, batch: int = 1) -> Prepared:
        """Fit `video`, tokenize its last 1 + k·τ frames in chunks, keep the last W latent frames."""
        from arvid.tokenizer import video_to_tensor

        frames, notes = self.fit(video)
        tau, T = self.temporal_factor, frames.shape[0]
        skip = (T - 1) % tau
        if skip:
            notes.append(f"the first {skip} input frame(s) are kept in the output but not tokenized: the "
                         f"tokenizer reads 1 + k·{tau} frames, counted back from the last input frame")
        keep = self.generator.config.window_frames
        enc = self.tokenizer.encoder_stream(1)
        tail: list[torch.Tensor] = []
        for start in range(skip, T, ENCODE_CHUNK):
            x = video_to_tensor(frames[start:start + ENCODE_CHUNK], self.channels)  # (1, C, n, H, W)
            codes = enc.push(x.to(self.device))  # (1, t_new, h, w)
            if codes.shape[1]:
                tail = (tail + [codes])[-keep:]
        context = torch.cat(tail, dim=1)[:, -keep:].expand(batch, -1, -1, -1).contiguous()
        return Prepared(frames=frames, context=context, notes=notes)

    @torch.inference_mode()  # as a decorator it is switched on and off around each step of the generator
    def _stream(self, num_frames: int, prepared: Prepared | None, opts: SamplingOptions) -> Iterator[np.ndarray]:
        from arvid.generator import generate

        batch = opts.batch if prepared is None else prepared.context.shape[0]
        dec = self.tokenizer.decoder_stream(batch)
        context = None
        if prepared is not None:
            context = prepared.context.to(self.device)
            dec.push(context)  # warm the decoder's causal state; these frames are the input's own
        n_latent = self.latent_frames_for(num_frames, after_context=prepared is not None)
        latents = generate(self.generator, n_latent, batch=batch, context=context, **opts.generate_kwargs(self.sampling))
        yield from decode_frames(dec, latents, num_frames)


def decode_frames(dec, latents: Iterator[torch.Tensor], num_frames: int) -> Iterator[np.ndarray]:
    """Push latent frames (B, h, w) through a streaming decoder; yield exactly `num_frames` frames (B, H, W, C)."""
    from arvid.tokenizer import tensor_to_video

    left = num_frames
    for codes in latents:
        frames = tensor_to_video(dec.push(codes[:, None]))  # (B, n, H, W, C)
        for i in range(min(left, frames.shape[1])):
            yield frames[:, i]
        left -= frames.shape[1]
        if left <= 0:
            return


def join_input(prepared: Prepared, new: np.ndarray) -> np.ndarray:
    """The input's own frames, then the new ones: (B, N, H, W, C) -> (B, T_in + N, H, W, C)."""
    head = np.broadcast_to(prepared.frames, (new.shape[0], *prepared.frames.shape))
    return np.concatenate([head, new], axis=1)


def check_pair(tokenizer, generator) -> None:
    """A tokenizer and a generator must share the codebook and the latent grid."""
    cfg = generator.config
    if cfg.vocab_size != tokenizer.codebook_size:
        raise ArvidError(f"the generator predicts {cfg.vocab_size} codes but the tokenizer has "
                         f"{tokenizer.codebook_size}: they were not trained together")


def _options(options: SamplingOptions | None, kwargs: dict) -> SamplingOptions:
    if options is not None and kwargs:
        raise ArvidError("give sampling options either as a SamplingOptions or as keywords, not both")
    try:
        opts = options or SamplingOptions(**kwargs)
    except TypeError as e:
        raise ArvidError(f"unknown sampling option: {e}") from e
    return opts


def _check_count(num_frames: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ArvidError(f"the number of frames must be a positive integer, got {num_frames!r}")
