"""The generation pipeline: a tokenizer and a generator, loaded together, turned into video.

    from arvid import Arvid
    model = Arvid.from_pretrained()                       # the default model shipped in the package
    clip = model.generate(64, seed=0, labels=[3, 7])      # uint8 (B, 64, H, W, C)
    longer = model.extend(clip[0], 32)                    # the input's 64 frames, then 32 new ones
    for frames in model.stream(1000, top_k=50):           # uint8 (B, H, W, C), as soon as decoded
        ...

The streaming API, in two public halves that `stream` joins: `latents` samples latent frames (tokens) and
`render` decodes any iterator of them into exactly the frames asked for. Tokens flow straight from the
generator into the tokenizer's streaming decoder: generated pixels are never re-encoded, so long clips do not
drift through a pixel round trip, and both the KV cache and the decoder state have fixed sizes (memory does not
grow with the clip).

Decoding settings are one `Sampling` value (`arvid.generator.sampling`): give it as `sampling=`, or give some
settings as keywords (`temperature=0.8`), which `Sampling.build` completes from the model folder's
`sampling.json` (its recommended decoding) and the defaults. Frame counts follow `arvid.tokenizer.frames`:
`generate(N)` samples 1 + ceil((N - 1) / τ) latent frames and returns exactly N frames; `extend(video, N)`
accepts any number of input frames, tokenizes its longest 1 + k·τ tail (so the tokens end exactly at the last
input frame), prefills the cache with the last W latent frames, and returns the input frames themselves followed
by exactly N new ones. A layered tokenizer (`arvid.tokenizer.layered`) starts every clip with a reference picture
that makes no frame: `generate(N)` samples 1 + ceil(N / τ) latent frames, and `extend` tokenizes the input's last
W·τ + r frames at most (r = T mod τ), with the reference's layers cut from the input's own pixels; the positions
of the last r frames start the next latent frame, whose rest the generator draws after them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from arvid.data.stats import StatsCounter, far_notice
from arvid.errors import ArvidError, ArvidNotice
from arvid.generator import Generator, Sampling, check_request, generate
from arvid.generator.sampling import check_seed
from arvid.reader import FOLDER as READER_FOLDER
from arvid.tokenizer import AnyTokenizer, load_tokenizer, new_latent_frames, tail_start, tensor_to_video, video_to_tensor
from arvid.utils import resolve_device
from arvid.utils import threads as cpu_threads
from arvid.utils.memory import check_fits
from arvid.utils.atomic import atomic_write_text
from arvid.video import fit_video

DEFAULT_MODEL_DIR = Path(__file__).parent / "weights" / "default"
SAMPLING_FILE = "sampling.json"  # a model folder's recommended decoding settings (optional)
REFERENCE_ROUNDS = 4  # layered models: rounds of reference candidates drawn while a clip has none drawn whole
ENCODE_CHUNK = 32  # frames pushed into the streaming encoder at a time when tokenizing an input clip
STATS_FRAMES = 16  # an input's first frames, whose pixel statistics are held against the model's training data
DEFAULT_FPS = 8.0  # frame rate of generated clips when no input says otherwise: the rate arvid's datasets are made at
Labels = Sequence[int] | Sequence[Sequence[int]] | np.ndarray | None  # k per clip, for all clips or (B, k); -1: none


@dataclass
class Prepared:
    """An input clip made ready for `extend` or `stream`: fitted frames and the tokens of its tail."""

    frames: np.ndarray  # uint8 (B or 1, T, H, W, C) at the model's resolution (1: one clip for the whole batch)
    context: torch.Tensor  # int64 (B, t, h, w): the last W latent frames (or fewer); a layered model's reference first
    notes: list[str] = field(default_factory=list)  # what was changed, said clearly
    reference: torch.Tensor | None = None  # layered models: the picture (B, H, W) in [0, 255] the layers are cut from
    partial: torch.Tensor | None = None  # layered models: (B, n) the first tokens of the next latent frame, the
    #   positions of the input's last frames that make no whole latent frame (None: it ends on a latent frame)
    partial_frames: int = 0  # the input frames `partial` holds: the next latent frame's first frames, not new ones


class Arvid:
    """A tokenizer and a generator that belong together (the generator predicts the tokenizer's codes)."""

    def __init__(self, tokenizer: AnyTokenizer, generator: Generator, device: str | torch.device | None = None,
                 recommended: dict | None = None, threads: int | None = None, reader=None):
        """threads: CPU threads for generating (default: chosen for the work, see `arvid.utils.threads`).
        reader: a `arvid.reader.LabelReader` (optional): a layered model keeps, among its reference candidates, one
        it reads the asked-for labels on."""
        if threads is not None:
            cpu_threads.check(threads, "threads")
        self.threads = threads
        self.device = resolve_device(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.generator = generator.to(self.device).eval()
        check_pair(self.tokenizer, self.generator)
        Sampling.build(recommended)  # a bad recommendation fails here, not at the first clip
        self.recommended = dict(recommended or {})  # the folder's sampling.json: what a request leaves unset
        self.reader = reader.to(self.device).eval() if reader is not None else None
        if reader is not None:
            self._check_reader(reader)

    def _check_reader(self, reader) -> None:
        """A label reader must read what this model makes: its pictures (size, channels) and its labels."""
        c, gen = reader.config, self.generator.config
        (h, w), channels = self.resolution, self.channels
        if not self.layered:
            raise ArvidError("a label reader picks a layered model's reference picture, and this model's tokenizer is "
                             "not layered (it draws no reference): leave the reader out")
        if (tuple(c.size), c.channels) != ((h, w), channels):
            raise ArvidError(f"the label reader reads {c.size[1]}x{c.size[0]} pictures of {c.channels} channel(s); the "
                             f"model makes {w}x{h} of {channels}: train the reader at the model's size "
                             "(arvid train reader --size)")
        if not gen.conditional:
            raise ArvidError("the generator takes no labels, so there is nothing for a label reader to read: "
                             "leave the reader out")
        if c.num_classes != gen.num_classes:
            raise ArvidError(f"the label reader reads {c.num_classes} classes; the generator is conditioned on "
                             f"{gen.num_classes}: train the reader on the generator's dataset")

    # ---- loading and saving ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        threads: int | None = None) -> "Arvid":
        """Load `path/tokenizer` and `path/generator` (and `path/sampling.json` and `path/reader`, where present);
        with no path, the default model."""
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ArvidError(f"from_pretrained takes a model folder's path (a str or os.PathLike), got "
                             f"{type(path).__name__} {path!r}")
        root = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if path is None and not root.is_dir():
            raise ArvidError(f"this build of arvid ships no default model ({root} is missing): "
                             "pass --model PATH to a folder with tokenizer/ and generator/")
        if root.exists() and not root.is_dir():
            raise ArvidError(f"{root} is a file, not a model folder: give the folder that holds tokenizer/ and "
                             "generator/ (`arvid pack` makes one)")
        if not root.is_dir():
            raise ArvidError(f"model folder {root} does not exist")
        for part in ("tokenizer", "generator"):
            if not (root / part).is_dir():
                raise ArvidError(f"model folder {root} has no {part}/ subfolder: a model folder holds "
                                 "tokenizer/ and generator/ (`arvid pack` makes one)")
        recommended = Sampling.read_file(root / SAMPLING_FILE) if (root / SAMPLING_FILE).exists() else None
        reader = None
        if (root / READER_FOLDER).is_dir():
            from arvid.reader import LabelReader

            reader = LabelReader.from_pretrained(root / READER_FOLDER)
        return cls(load_tokenizer(root / "tokenizer", device="cpu"),
                   Generator.from_pretrained(root / "generator", device="cpu"), device, recommended, threads, reader)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise ArvidError(f"cannot save a model to {root}: it is a file; give a folder")
        root.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(root / "tokenizer")
        self.generator.save_pretrained(root / "generator")
        if self.reader is not None:
            self.reader.save_pretrained(root / READER_FOLDER)
        elif (root / READER_FOLDER).is_dir():  # an earlier model's reader there would pick this model's pictures
            shutil.rmtree(root / READER_FOLDER)
        if self.recommended:
            atomic_write_text(root / SAMPLING_FILE, json.dumps(self.recommended, indent=1) + "\n")
        else:  # an earlier model's recommendation there would decode this model with another's settings
            (root / SAMPLING_FILE).unlink(missing_ok=True)

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

    def thread_count(self) -> int:
        """CPU threads a request runs with now: as asked, else chosen for this generator's steps (a raster model's
        one-token steps take one thread; a masked model's whole-frame steps take the cores not busy now)."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        work = cpu_threads.PARALLEL if self.generator.config.masked else cpu_threads.SMALL_STEPS
        return cpu_threads.choose(work, self.threads)

    @property
    def fps(self) -> float:
        """Frame rate to write generated clips at when no input clip gives one (the model has no clock)."""
        return DEFAULT_FPS

    def sampling(self, labels=None, sampling: Sampling | None = None, **settings) -> Sampling:
        """The `Sampling` a request runs with: `sampling` as given, or the keyword `settings` completed from this
        model's recommended decoding and the defaults (`Sampling.build`)."""
        if sampling is not None:
            if settings:
                raise ArvidError(f"give decoding settings either as sampling= or as keywords, not both "
                                 f"(got sampling= and {', '.join(sorted(settings))})")
            if not isinstance(sampling, Sampling):
                raise ArvidError(f"sampling must be an arvid Sampling, got {type(sampling).__name__}")
            return sampling
        return Sampling.build(settings, self.recommended, labels=labels is not None)

    def check(self, s: Sampling, labels=None, batch: int = 1, seed: int = 0, kept: int = 0) -> None:
        """ArvidError now, before any work, if the request cannot run on this model: a seed that is not a whole
        number in [0, 2**63), labels of the wrong count or range, guidance without labels, a batch below 1 or one
        whose buffers would not fit in memory, or `kept` frames per clip (what generate and extend return) that
        would not."""
        check_seed(seed)
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ArvidError(f"batch must be a positive integer, got {batch!r}")
        check_request(self.generator, s, labels, int(batch))
        if not self.layered:
            for name, off in (("reference_candidates", 1), ("reference_temperature", 1.0)):
                if getattr(s, name) != off:
                    raise ArvidError(f"{name} {getattr(s, name):g} applies to layered models only (their clips start "
                                     f"from a reference picture): this model is not one; leave it at {off:g}")
        check_fits(self.request_bytes(int(batch), s.is_on("guidance")), f"generating a batch of {batch} clip(s)",
                   "lower --batch (batch=)")
        H, W = self.resolution
        check_fits(int(batch) * kept * H * W * self.channels, f"returning {batch} clip(s) of {kept:,} frames",
                   "ask for fewer frames, or take them as they come with stream() (as the CLI writes them)")

    def request_bytes(self, batch: int, guided: bool) -> float:
        """An upper estimate of the large buffers generating a batch holds: the KV cache (twice the rows with
        guidance), a frame step's logits and noise, and the decoder's activations for a latent frame."""
        cfg, tok = self.generator.config, self.tokenizer.config
        rows = batch * (2 if guided else 1)
        chunk = cfg.decode_chunk
        slots = cfg.sinks + cfg.window + chunk - 1
        elt = next(self.generator.parameters()).element_size()
        cache = cfg.n_layer * rows * cfg.n_kv_head * (2 * slots + cfg.sinks + 1) * cfg.head_size * elt
        step = rows * chunk * (cfg.vocab_size * 3 + cfg.mlp_hidden * 4 + cfg.d_model * 8) * 4
        H, W = self.resolution
        decoder = batch * tok.temporal_factor * H * W * (tok.channels + 2 * tok.width) * 4
        return cache + step + decoder

    # ---- the three uses -------------------------------------------------------------------------------
    def stream(self, num_frames: int, video: np.ndarray | Prepared | None = None, *, seed: int = 0,
               labels: Labels = None, batch: int = 1, sampling: Sampling | None = None,
               temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
               min_p: float | None = None, guidance: float | None = None, steps: int | None = None,
               choice_temperature: float | None = None, reference_temperature: float | None = None,
               reference_candidates: int | None = None,
               progress: bool = False) -> Iterator[np.ndarray]:
        """Yield new frames, uint8 (B, H, W, C), as soon as they are decoded: exactly `num_frames` of them.

        video: uint8 (T, H, W, C), repeated for a batch of `batch`; or B clips (B, T, H, W, C); or what `prepare`
            made of one: continue it. None: start a new clip. A clip of another size or colour is fitted to the
            model, with an `ArvidNotice` warning that says what changed, and another where the clip is far from
            the model's training data (colour into a gray model, much brighter or darker; `arvid.data.stats`).
        seed: the random seed; the same seed and settings make the same clip.
        labels: k per clip, for all clips or (B, k); -1 means none.
        batch: how many clips to make at once.
        sampling: every decoding setting as one `Sampling`; or give some of them as keywords instead:
        temperature, top_k, top_p, min_p, guidance, steps, choice_temperature, reference_temperature,
            reference_candidates: None takes the model's recommended value, else the default (`Sampling` says what
            each does). With a layered model (`arvid.tokenizer.layered`) guidance steers the reference picture only,
            where the labels show, drawn at reference_temperature; the positions are drawn unguided at temperature.
        progress: show a progress bar (frames made, frames per second) on stderr.

        Every argument is checked when this is called, before any work."""
        _check_count(num_frames)
        settings = _settings(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, guidance=guidance,
                             steps=steps, choice_temperature=choice_temperature,
                             reference_temperature=reference_temperature, reference_candidates=reference_candidates)
        s = self.sampling(labels, sampling, **settings)
        batch = _batch_of(video, batch)
        self.check(s, labels, batch, seed)
        prepared = video
        if video is not None and not isinstance(video, Prepared):
            prepared = self.prepare(video, batch)
            _notify(prepared.notes)
        given = prepared.partial_frames if prepared is not None else 0  # the next latent frame's first frames
        n_latent = new_latent_frames(num_frames + given, self.temporal_factor, after_context=prepared is not None,
                                     first=self.tokenizer.first_frames)
        latents = self.latents(n_latent, prepared, seed=seed, labels=labels, batch=batch, sampling=s)
        frames = self.render(latents, num_frames, batch, prepared)
        return _progress(frames, num_frames) if progress else frames

    def generate(self, num_frames: int, *, seed: int = 0, labels: Labels = None, batch: int = 1,
                 sampling: Sampling | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None, guidance: float | None = None,
                 steps: int | None = None, choice_temperature: float | None = None,
                 reference_temperature: float | None = None, reference_candidates: int | None = None,
                 progress: bool = False) -> np.ndarray:
        """A new clip of exactly `num_frames` frames: uint8 (B, num_frames, H, W, C).

        seed, labels, batch, sampling, the decoding settings (temperature ... choice_temperature; None: the
        model's recommended value) and progress (a progress bar on stderr) are as for `stream`."""
        settings = _settings(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, guidance=guidance,
                             steps=steps, choice_temperature=choice_temperature,
                             reference_temperature=reference_temperature, reference_candidates=reference_candidates)
        _check_count(num_frames)
        self.check(self.sampling(labels, sampling, **settings), labels, batch, seed, kept=num_frames)
        frames = self.stream(num_frames, None, seed=seed, labels=labels, batch=batch, sampling=sampling,
                             progress=progress, **settings)
        return np.stack(list(frames), axis=1)

    def extend(self, video: np.ndarray | Prepared, num_frames: int, *, seed: int = 0, labels: Labels = None,
               batch: int = 1, sampling: Sampling | None = None, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
               guidance: float | None = None, steps: int | None = None, choice_temperature: float | None = None,
               reference_temperature: float | None = None, reference_candidates: int | None = None,
               progress: bool = False) -> np.ndarray:
        """The input clip followed by `num_frames` new frames: uint8 (B, T_in + num_frames, H, W, C).

        video: uint8 (T, H, W, C) or B clips (B, T, H, W, C), fitted to the model's size and colour with an
        `ArvidNotice` warning that says what changed (and one where it is far from the training data, as for
        `stream`). seed, labels, batch, sampling, the decoding settings
        (temperature ... choice_temperature; None: the model's recommended value) and progress (a progress bar
        on stderr) are as for `stream`."""
        _check_count(num_frames)
        settings = _settings(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, guidance=guidance,
                             steps=steps, choice_temperature=choice_temperature,
                             reference_temperature=reference_temperature, reference_candidates=reference_candidates)
        if not isinstance(video, Prepared):
            shape = np.shape(video)  # (T, H, W), (T, H, W, C) or (B, T, H, W, C); fit() refuses others
            given = shape[-4] if len(shape) in (4, 5) else shape[0] if shape else 0
            self.check(self.sampling(labels, sampling, **settings), labels, _batch_of(video, batch), seed,
                       kept=given + num_frames)
            video = self.prepare(video, batch)  # checked first: a bad request reads nothing
            _notify(video.notes)
        frames = self.stream(num_frames, video, seed=seed, labels=labels, batch=batch, sampling=sampling,
                             progress=progress, **settings)
        return join_input(video, np.stack(list(frames), axis=1))

    # ---- the parts -------------------------------------------------------------------------------------
    def latents(self, num_latent: int, prepared: Prepared | None = None, *, seed: int = 0, labels: Labels = None,
                batch: int = 1, sampling: Sampling | None = None) -> Iterator[torch.Tensor]:
        """Yield `num_latent` new latent frames, int64 (B, h, w), after `prepared`'s context if given. A layered
        model's new clip starts with its reference picture (`draw_reference`); its positions are drawn unguided."""
        s = sampling or Sampling()
        context = prepared.context.to(self.device) if prepared is not None else None
        if not self.layered:
            return _inference(generate(self.generator, num_latent, s, batch=batch, labels=labels, context=context,
                                       seed=seed), self.thread_count())
        motion = replace(s, guidance=1.0, reference_candidates=1)
        if context is not None or num_latent == 0:
            partial = prepared.partial.to(self.device) if prepared is not None and prepared.partial is not None \
                else None
            return _inference(generate(self.generator, num_latent, motion, batch=batch, labels=labels,
                                       context=context, partial=partial, seed=seed), self.thread_count())

        def clip() -> Iterator[torch.Tensor]:
            ref = self.draw_reference(s, labels, batch, seed)  # (B, h, w)
            yield ref
            yield from generate(self.generator, num_latent - 1, motion, batch=batch, labels=labels,
                                context=ref[:, None], seed=seed + 1)

        return _inference(clip(), self.thread_count())

    @torch.no_grad()
    def draw_reference(self, s: Sampling, labels: Labels, batch: int, seed: int) -> torch.Tensor:
        """A layered model's reference pictures, int64 codes (B, h, w), drawn with `s` at its reference_temperature
        (guidance included). With `s.reference_candidates` = n above 1, n are drawn per clip, in up to
        REFERENCE_ROUNDS rounds while a clip has no candidate that is good enough: its objects drawn whole, as many
        as the model has layers (`arvid.tokenizer.layers.well_drawn`), and, where the model has a label reader and
        the clip labels, the reader finding every label on it (`arvid.reader`). Each clip keeps the best candidate
        drawn: drawn whole and most clearly showing its labels, else drawn whole, else with its ink in that many
        pieces, else its first; the first among equals."""
        from arvid.generator.model import check_labels
        from arvid.tokenizer.layers import count_pieces, well_drawn

        n, gen, tok = s.reference_candidates, self.generator, self.tokenizer
        drawn = replace(s, temperature=s.reference_temperature, reference_candidates=1)
        lab = check_labels(gen.config, labels, batch, self.device)
        if lab is not None:  # as labels again: the null label is -1
            lab = torch.where(lab == gen.config.null_label, torch.full_like(lab, -1), lab)
        if n == 1:
            return next(iter(generate(gen, 1, drawn, batch=batch, labels=lab, seed=seed)))
        read = self.reader is not None and lab is not None and bool((lab >= 0).any())
        best = torch.full((batch,), -1.0)  # each clip's pick: its tier (2 whole, 1 pieces, 0) + its reader score
        picked = None
        for attempt in range(REFERENCE_ROUNDS):
            done = best > 2.5 if read else best >= 2  # drawn whole, and read (score above 0.5) where a reader reads
            todo = (~done).nonzero()[:, 0]
            if len(todo) == 0:
                break
            rows = lab[todo].repeat_interleave(n, 0) if lab is not None else None
            cand = next(iter(generate(gen, 1, drawn, batch=len(todo) * n, labels=rows, seed=seed + attempt)))
            pictures = tok.reference_pixels(cand).numpy()  # (b n, H, W), on 8-bit levels
            tier = torch.tensor([2.0 if well_drawn(p, tok.config.layers, tok.rule)
                                 else 1.0 if count_pieces(p, tok.rule) == tok.config.layers else 0.0
                                 for p in pictures])
            if read:  # the reader's score counts among candidates drawn whole
                score = self.reader.label_scores(pictures.round().clip(0, 255).astype(np.uint8), rows.cpu())
                tier = tier + torch.where(tier == 2, score.float().cpu(), torch.zeros_like(tier))
            tier = tier.view(len(todo), n)
            pick = tier.argmax(1)  # the first of the best
            cand = cand.view(len(todo), n, *cand.shape[1:])[torch.arange(len(todo)), pick.to(cand.device)]
            if picked is None:
                picked = cand.new_zeros(batch, *cand.shape[1:])
            value = tier.max(1).values
            better = value > best[todo]
            picked[todo[better].to(picked.device)] = cand[better.to(cand.device)]
            best[todo[better]] = value[better]
        return picked

    def render(self, latents: Iterable[torch.Tensor], num_frames: int, batch: int,
               prepared: Prepared | None = None) -> Iterator[np.ndarray]:
        """Decode latent frames (B, h, w) as they come into exactly `num_frames` frames, uint8 (B, H, W, C) each;
        after `prepared`, whose tokens first warm the decoder (their frames are the input's own, as are the first
        `prepared.partial_frames` of the first latent frame)."""
        if prepared is not None and prepared.reference is not None:  # layered: the input's own picture, unquantized
            dec = self.tokenizer.decoder_stream(batch, reference=prepared.reference.expand(batch, -1, -1))
        else:
            dec = self.tokenizer.decoder_stream(batch)
        n_threads = self.thread_count()
        if prepared is not None:
            with torch.inference_mode(), cpu_threads.using(n_threads):
                dec.push(prepared.context.to(self.device))
        left = num_frames
        known = prepared.partial_frames if prepared is not None else 0  # the input's own: not shown again
        for codes in latents:
            with torch.inference_mode(), cpu_threads.using(n_threads):
                frames = tensor_to_video(dec.push(codes[:, None]))[:, known:]  # (B, n, H, W, C)
            known = 0
            for i in range(min(left, frames.shape[1])):
                yield frames[:, i]
            left -= frames.shape[1]
            if left <= 0:
                return

    def fit(self, video: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Fit frames (T, H, W[, C]) or (B, T, H, W, C) to the model's resolution and channels (resize the short
        side, centre-crop) -> uint8 (B, T, H, W, C) and what was changed."""
        frames = np.asarray(video)
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4, 5):
            raise ArvidError(f"expected a uint8 video (T, H, W, C), got {frames.dtype} of shape {frames.shape}")
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.shape[-1] not in (1, 3):
            raise ArvidError(f"{frames.shape[-1]} channels are not supported (shape {frames.shape}); expected 1 "
                             "(gray) or 3 (RGB), e.g. drop alpha with x[..., :3]")
        if frames.ndim == 4:
            frames = frames[None]
        if frames.shape[1] < 1:
            raise ArvidError("the input video has no frames")
        notes = []
        H, W = self.resolution
        if frames.shape[2:4] != (H, W):
            notes.append(f"resized {frames.shape[3]}x{frames.shape[2]} to {W}x{H} "
                         "(short side scaled, then centre-cropped) to match the model")
            frames = np.stack([fit_video(f, (H, W)) for f in frames])
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
        """Fit `video` (one clip, or a batch of clips of equal length), tokenize the longest 1 + k·τ tail of its
        frames in chunks, keep the last W latent frames; one clip is repeated for a batch of `batch`."""
        frames, notes = self.fit(video)
        raw = np.asarray(video)
        raw = raw[..., None] if raw.ndim == 3 else raw
        counter = StatsCounter()
        counter.push(raw[:STATS_FRAMES] if raw.ndim == 4 else raw[:, :STATS_FRAMES])
        notes += self._far_notes(counter)
        notes += self._skip_notes(frames.shape[1])
        tail = self._encode_tail((frames[:, t] for t in range(frames.shape[1])), frames.shape[1], frames.shape[0])
        if frames.shape[0] == 1 and batch > 1:  # one clip for all: its frames are broadcast when joined
            tail = tail.expand(batch)
        return Prepared(frames=frames, notes=notes, **tail.fields())

    def prepare_stream(self, frames: Iterable[np.ndarray], count: int, batch: int = 1,
                       put: Callable[[np.ndarray], None] | None = None) -> Prepared:
        """`prepare` for one clip given one frame (H, W, C) at a time, `count` of them (`arvid.video.io.stream_video`):
        each frame, once fitted, goes to `put` as (1, H, W, C) and is not kept; only the frames tokenized together
        are held. The same context and notes as `prepare`; the Prepared's `frames` is empty (1, 0, H, W, C)."""
        if count < 1:
            raise ArvidError("the input video has no frames")
        notes: list[str] = []
        counter = StatsCounter()

        def fitted() -> Iterator[np.ndarray]:
            for t, frame in enumerate(frames):
                one, said = self.fit(frame[None])  # (1, 1, H, W, C)
                if t == 0:
                    notes.extend(said)
                if t < STATS_FRAMES:
                    counter.push(frame if np.ndim(frame) == 3 else np.asarray(frame)[..., None])
                if put is not None:
                    put(one[:, 0])
                yield one[:, 0]

        tail = self._encode_tail(fitted(), count, 1)
        if batch > 1:
            tail = tail.expand(batch)
        H, W = self.resolution
        return Prepared(frames=np.zeros((1, 0, H, W, self.channels), np.uint8),
                        notes=notes + self._far_notes(counter) + self._skip_notes(count), **tail.fields())

    def _far_notes(self, counter: StatsCounter) -> list[str]:
        """A note where the input's first frames are far from the model's training data (`arvid.data.stats`):
        colour into a gray model or gray into a colour one, much brighter or darker; nothing where the training
        data is unknown."""
        note = far_notice(counter.stats(), self.tokenizer.config.notes)
        return [note] if note else []

    @property
    def layered(self) -> bool:
        """A layered tokenizer: the first latent frame is a reference picture, the rest positions of its layers."""
        return self.tokenizer.first_frames == 0

    def _tail_plan(self, T: int) -> tuple[int, int]:
        """(frames passed over at the start, copies of the last frame put after it) for an input of T frames.
        A conv tokenizer reads the longest 1 + k·τ tail (its causal state needs every frame of it). A layered one
        reads the last W·τ + r frames at most, r = T mod τ (its tokens hold no state beyond the window; the last r
        frames' positions start the next latent frame). An input shorter than τ frames is read whole, with its last
        frame repeated after it to make τ: the copies only let the encoder choose the reference among τ frames,
        their positions are dropped."""
        tau = self.temporal_factor
        if not self.layered:
            return tail_start(T, tau), 0
        if T < tau:
            return 0, tau - T
        return T - min(T // tau, self.generator.config.window_frames) * tau - T % tau, 0

    def _skip_notes(self, T: int) -> list[str]:
        skip, tau = self._tail_plan(T)[0], self.temporal_factor
        if not skip:
            return []
        if self.layered:
            return [f"the first {skip} input frame{'s' if skip > 1 else ''} {'start' if skip > 1 else 'starts'} "
                    f"the output unchanged but do{'' if skip > 1 else 'es'} not steer the new frames: the model reads "
                    f"at most the input's last {self.generator.config.window_frames * tau + T % tau}"]
        return [f"the first {skip} input frame{'s' if skip > 1 else ''} {'start' if skip > 1 else 'starts'} "
                f"the output unchanged but do{'' if skip > 1 else 'es'} not steer the new frames: the model "
                f"reads the input in steps of {tau} frames, counted back from its last frame"]

    def _encode_tail(self, frames: Iterable[np.ndarray], T: int, B: int) -> "_Tail":
        """Tokenize the tail of `T` fitted frames that `_tail_plan` names, given one step (B, H, W, C) at a time, in
        chunks of ENCODE_CHUNK frames from its start -> its last W latent frames (a layered model's reference
        first, its picture, and the positions of the last frames that make no whole latent frame). Frames before
        the tail are passed over; a chunk is all that is held."""
        skip, pad = self._tail_plan(T)
        keep = self.generator.config.window_frames
        if self.layered:  # the layers are cut from the input's own pixels: a continuation keeps its exact look
            enc = self.tokenizer.encoder_stream(B, exact_reference=True)
        else:
            enc = self.tokenizer.encoder_stream(B)
        tail: list[torch.Tensor] = []
        chunk: list[np.ndarray] = []
        n_threads = cpu_threads.choose(cpu_threads.PARALLEL, self.threads) if self.device.type == "cpu" else None
        seen = 0
        for t, frame in enumerate(frames):
            seen += 1
            if t < skip:
                continue
            chunk.append(frame)
            if t == T - 1 and pad:
                chunk.extend([frame] * pad)
            if len(chunk) < ENCODE_CHUNK and t < T - 1:
                continue
            with torch.inference_mode(), cpu_threads.using(n_threads or torch.get_num_threads()):
                x = video_to_tensor(np.stack(chunk, axis=1), self.channels)  # (B, C, n, H, W)
                codes = enc.push(x.to(self.device))  # (B, t_new, h, w)
            chunk = []
            if codes.shape[1]:
                tail = tail + [codes] if self.layered else (tail + [codes])[-keep:]  # layered: a bounded tail
        if seen != T:
            raise ArvidError(f"the input video gave {seen} frames, not the {T} it declared")
        codes = torch.cat(tail, dim=1)
        if not self.layered:
            return _Tail(codes[:, -keep:])
        if pad:  # one latent frame of positions, of which the first T are the input's
            given = T * self.tokenizer.config.layers * 2
            return _Tail(codes[:, :1], enc.reference, codes[:, 1].reshape(B, -1)[:, :given], T)
        # the reference's latent frame, the positions' last W, and the frames after them
        return _Tail(torch.cat([codes[:, :1], codes[:, 1:][:, -keep:]], dim=1), enc.reference, enc.partial_codes(),
                     T % self.temporal_factor)


@dataclass
class _Tail:
    """What `_encode_tail` read from an input: its context, and for a layered model the reference picture and the
    partial latent frame (`Prepared` says what each is)."""

    context: torch.Tensor  # (B, t, h, w)
    reference: torch.Tensor | None = None  # (B, H, W)
    partial: torch.Tensor | None = None  # (B, n)
    partial_frames: int = 0

    def expand(self, batch: int) -> "_Tail":
        """One clip's tail for a batch of `batch` (the picture is broadcast where it is used)."""
        part = None if self.partial is None else self.partial.expand(batch, -1)
        return replace(self, context=self.context.expand(batch, -1, -1, -1), partial=part)

    def fields(self) -> dict:
        part = None if self.partial is None or self.partial.shape[1] == 0 else self.partial.contiguous()
        return {"context": self.context.contiguous(), "reference": self.reference, "partial": part,
                "partial_frames": self.partial_frames if part is not None else 0}


def _inference(it: Iterator[torch.Tensor], n_threads: int) -> Iterator[torch.Tensor]:
    """Run a generator of tensors under inference mode with `n_threads` CPU threads, both switched on only while
    it computes, so a paused stream leaves the caller's settings alone."""
    while True:
        with torch.inference_mode(), cpu_threads.using(n_threads):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def join_input(prepared: Prepared, new: np.ndarray) -> np.ndarray:
    """The input's own frames, then the new ones: (B, N, H, W, C) -> (B, T_in + N, H, W, C)."""
    head = np.broadcast_to(prepared.frames, (new.shape[0], *prepared.frames.shape[1:]))
    return np.concatenate([head, new], axis=1)


def check_pair(tokenizer: AnyTokenizer, generator: Generator) -> None:
    """A generator predicts the codes of one tokenizer: the codebook sizes must match. (Any latent grid works
    with any tokenizer: it sets the resolution, h·s x w·s pixels.)"""
    cfg = generator.config
    if cfg.vocab_size != tokenizer.codebook_size:
        raise ArvidError(f"the generator predicts {cfg.vocab_size} codes but the tokenizer has "
                         f"{tokenizer.codebook_size}: they were not trained together")


def _settings(**given) -> dict:
    """The decoding settings a call gave as keywords (None: not given)."""
    return {k: v for k, v in given.items() if v is not None}


def _notify(notes: list[str]) -> None:
    """Say what fitting an input clip changed, as `ArvidNotice` warnings pointing at the caller's line."""
    for note in notes:
        warnings.warn(note, ArvidNotice, stacklevel=3)


def _progress(frames: Iterator[np.ndarray], total: int) -> Iterator[np.ndarray]:
    """`frames`, with a progress bar on stderr: frames made and frames per second."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="frame", desc="generating", dynamic_ncols=True) as bar:
        for frame in frames:
            bar.update(1)
            yield frame


def _batch_of(video, batch: int) -> int:
    """The batch a request makes: `batch` for no video or one clip to repeat; the count of clips given (B, T, H, W, C)
    or prepared, which `batch` may repeat but not contradict."""
    if isinstance(video, Prepared):
        given = video.context.shape[0]
    elif video is not None and np.ndim(video) == 5:
        given = len(video)
    else:
        return batch
    if batch != 1 and batch != given:
        raise ArvidError(f"batch={batch!r} but the video holds {given} clips: leave batch out (or give batch={given}) "
                         f"to continue each of them, or give one clip (T, H, W, C) to make {batch} from it")
    return given


def _check_count(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ArvidError(f"the number of frames must be a positive integer, got {num_frames!r}")
