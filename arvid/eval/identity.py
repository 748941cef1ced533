"""Digit identity over time: does a digit stay the same digit from frame to frame?

`arvid eval generation` uses it to count identity switches. Three parts, each small:

1. A single-digit reader (`IdentityReader`, a small CNN on 28x28 crops), trained when the evaluation runs,
   deterministically, in seconds on a CPU, on canonical TRAIN digits 0-3999 only (nothing downloaded),
   augmented so that it copes with Moving MNIST frames and with what a decoder draws: small shifts and
   scales, thicker and thinner strokes, blur, dimmer digits, and part of another digit combined by maximum.
   An eleventh class, TWO, is two digits almost on top of each other: a crop it reads as TWO is not read
   confidently as any digit. Its accuracy is measured on the isolated held-out digits 4000-4999, each
   placed in a frame and found and read the way frames are (`heldout_accuracy`; 0.966 at the defaults).
2. Finding digits in a uint8 frame (H, W) (`find_digits`): 8-connected components of pixels >= THRESHOLD;
   the pieces of a broken stroke are joined while together they span at most MAX_EXTENT pixels (largest
   first); groups of fewer than MIN_AREA pixels are specks. A component that alone spans more than
   MAX_EXTENT pixels in height or width is too large to be one digit (MNIST digits span at most 20): it
   is found but not legible (two digits that touch, or a smear). Each legible digit is cropped 28x28
   around its centre of mass (where MNIST puts it), the bright pixels of other digits blanked, and read
   with a confidence: the softmax probability of its most likely digit class.
3. Tracking (`track`): legible digits are linked between consecutive frames by nearest centroid, one to one,
   within MAX_STEP pixels (Moving MNIST digits move 3 px a frame); a digit left unlinked ends its track,
   one not linked to begins one. Digits read without confidence stay on their track.

An identity switch: a track read confidently as class a and, at its next confident read, as class b != a.
Tracked steps are the pairs of consecutive confident reads of a track (a step over reads that were not
confident counts once). Figures per clip set (`identity_figures`): switches per 100 tracked steps, and the
share of digits read confidently: confident reads / digits expected (`expected` per frame, 2 for Moving
MNIST; None: the components found), at most `expected` counted per frame.

    reader = identity_reader()                  # trained once per process and argument set
    figs = identity_figures(clips)              # clips uint8 (N, T, H, W[, 1]) -> dict
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arvid.data import mnist_digits
from arvid.video.flow import require_opencv

DIGIT = 28  # crop side, as MNIST
THRESHOLD = 128  # uint8 level from which a pixel may belong to a digit
MIN_AREA = 16  # bright pixels: smaller components are specks
MAX_EXTENT = 24  # px: a component spanning more, in height or width, is not one digit (MNIST digits span <= 20)
MAX_STEP = 10.0  # px a digit's centroid may move between frames and stay on its track
CONFIDENT = 0.9  # softmax probability from which a read counts as confident
EXPECTED = 2  # digits per Moving MNIST frame
TWO = 10  # the reader's extra class: two digits on top of each other


# ---------------------------------------------------------------- the reader


class IdentityReader(nn.Module):
    """(B, 1, 28, 28) crops in [0, 1] -> (B, 11) logits: the 10 digit classes, and TWO (two digits on top of each
    other, not one digit)."""

    def __init__(self, width: int = 8):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),  # 4x4
            nn.Flatten(), nn.Linear(4 * w * 16, 64), nn.ReLU(), nn.Linear(64, 11),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: float) -> torch.Tensor:
    """(B, 1, 28, 28) moved by up to `max_shift` px and scaled by 0.9-1.1, each crop on its own (bilinear)."""
    b = len(x)
    scale = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.2
    move = (torch.rand(b, 2, generator=gen) * 2 - 1) * max_shift * 2 / DIGIT  # in grid units ([-1, 1] spans 28 px)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = move
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _cross(x: torch.Tensor, op) -> torch.Tensor:
    """x (B, 1, H, W) combined by `op` (torch.maximum: dilation; torch.minimum: erosion) with its 4 neighbours."""
    p = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    out = x
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        out = op(out, p[..., dy:dy + h, dx:dx + w])
    return out


def _strokes(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per crop, one of: as is, thicker, thinner, blurred; then dimmed to 0.55-1 of its peak."""
    thick = _cross(x, torch.maximum)
    thin = torch.maximum(_cross(x, torch.minimum), x * 0.5)
    blur = (x + thick) * 0.6
    pick = torch.randint(0, 4, (len(x), 1, 1, 1), generator=gen)
    out = torch.where(pick == 1, thick, torch.where(pick == 2, thin, torch.where(pick == 3, blur, x))).clamp(0, 1)
    return out * (0.55 + 0.45 * torch.rand(len(x), 1, 1, 1, generator=gen))


def _moved(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) crops moved by (dy, dx) pixels (B,) each (bilinear, zeros brought in)."""
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -dx * 2 / DIGIT, -dy * 2 / DIGIT
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


def _overlap(x: torch.Tensor, y: torch.Tensor, other: torch.Tensor, gen: torch.Generator,
             far: float = 0.3, near: float = 0.12) -> tuple[torch.Tensor, torch.Tensor]:
    """Another digit combined with the crop by maximum: with probability `far`, moved 14-22 px off centre (part of
    it shows; the label stays), with probability `near`, both moved 2-6 px apart around the centre (two digits on
    top of each other: labelled TWO, not one digit). -> crops (B, 1, 28, 28), labels (B,)."""
    b = len(x)
    angle = torch.rand(b, generator=gen) * 2 * torch.pi
    mode = torch.rand(b, generator=gen)
    is_near = mode < near
    dist = torch.where(is_near, 2 + 4 * torch.rand(b, generator=gen), 14 + 8 * torch.rand(b, generator=gen))
    dy, dx = dist * torch.sin(angle), dist * torch.cos(angle)
    half = is_near.float()  # near pairs: each digit moved half the way, the pair centred
    mixed = torch.maximum(_moved(x, -half * dy, -half * dx), _moved(other, (1 - half / 2) * dy, (1 - half / 2) * dx))
    on = (mode < near + far)[:, None, None, None]
    return torch.where(on, mixed, x), torch.where(is_near, TWO, y)


def _augment(x: torch.Tensor, y: torch.Tensor, other: torch.Tensor,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-time crops (B, 1, 28, 28) and labels (B,): shifted, restroked, overlapped, with a little noise."""
    x = _strokes(_shift(x, gen, max_shift=1.5), gen)
    x, y = _overlap(x, y, other * (0.55 + 0.45 * torch.rand(len(x), 1, 1, 1, generator=gen)), gen)
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1), y


def train_identity_reader(steps: int = 600, batch: int = 64, seed: int = 0) -> IdentityReader:
    """An IdentityReader trained on canonical train digits 0-3999 (a pure function of the arguments)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small runs fastest on one thread, and the same on any machine's count
    try:
        with torch.inference_mode(False), torch.enable_grad():  # callable from evaluation code that turned grads off
            return _train(steps, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int, batch: int, seed: int) -> IdentityReader:
    digits, labels = mnist_digits("train")  # (4000, 28, 28), (4000,)
    x = torch.from_numpy(digits.astype(np.float32) / 255)[:, None]
    y = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        reader = IdentityReader()
    if steps == 0:
        return reader.eval()
    opt = torch.optim.AdamW(reader.parameters(), lr=5e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps, pct_start=0.15)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        other = torch.randint(0, len(x), (batch,), generator=gen)
        crops, target = _augment(x[idx], y[idx], x[other], gen)
        loss = F.cross_entropy(reader(crops), target, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return reader.eval()


@functools.lru_cache(maxsize=2)
def identity_reader(steps: int = 600, seed: int = 0) -> IdentityReader:
    """`train_identity_reader(steps, seed=seed)`, trained once per process (the evaluation and tests share it)."""
    return train_identity_reader(steps, seed=seed)


@torch.inference_mode()
def read_crops(reader: IdentityReader, crops: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """float (N, 28, 28) crops in [0, 1] -> classes int64 (N,) (the most likely digit) and confidences float (N,)
    (its softmax probability; what the reader gives TWO lowers it)."""
    if len(crops) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))[:, None]
    probs = torch.cat([reader(x[i:i + batch]).softmax(-1) for i in range(0, len(x), batch)])
    conf, cls = probs[:, :TWO].max(-1)
    return cls.numpy().astype(np.int64), conf.numpy()


# ---------------------------------------------------------------- finding digits in a frame


@dataclass
class FrameDigits:
    """The components of one frame: centroids float (n, 2) as (y, x), legible bool (n,), crops float (n, 28, 28)
    in [0, 1] (zeros where not legible); after reading, classes int64 (n,) (-1: not legible) and confidences (n,)."""

    centroids: np.ndarray
    legible: np.ndarray
    crops: np.ndarray
    classes: np.ndarray | None = None
    confidences: np.ndarray | None = None

    def confident(self, level: float = CONFIDENT) -> np.ndarray:
        """bool (n,): legible and read with at least `level` confidence."""
        return self.legible & (self.confidences >= level)


def _gray(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W[, 1]) -> (H, W)."""
    return frame[..., 0] if frame.ndim == 3 else frame


def _span(box: tuple[int, int, int, int]) -> int:
    """The larger side of a box (y0, x0, y1, x1), inclusive ends."""
    return max(box[2] - box[0], box[3] - box[1]) + 1


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _group(stats: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Pieces of one digit joined: component k (row k of OpenCV's stats, (n, 5), row 0 background) joins the first
    group, largest components first, whose box stays within one digit's extent with it. -> group of each
    component (n,) (-1 for the background) and each group's box (y0, x0, y1, x1)."""
    group, boxes = np.full(len(stats), -1), []
    for k in np.argsort(-stats[:, 4], kind="stable"):
        if k == 0:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        box = (y, x, y + h - 1, x + w - 1)
        for g, gb in enumerate(boxes):
            if _span(gb) <= MAX_EXTENT and _span(_union(gb, box)) <= MAX_EXTENT:
                group[k], boxes[g] = g, _union(gb, box)
                break
        else:
            group[k] = len(boxes)
            boxes.append(box)
    return group, boxes


def _crop(f: np.ndarray, owner: np.ndarray, g: int, cy: float, cx: float) -> np.ndarray:
    """A float (28, 28) crop in [0, 1] of the uint8 frame f (H, W) centred on (cy, cx), the bright pixels of groups
    other than g (owner (H, W): each pixel's group, -1 for dim pixels) blanked."""
    keep = np.where((owner == -1) | (owner == g), f, 0).astype(np.float32) / 255
    padded = np.pad(keep, DIGIT)
    y0, x0 = int(round(cy)) - DIGIT // 2 + DIGIT, int(round(cx)) - DIGIT // 2 + DIGIT  # in padded coordinates
    return padded[y0:y0 + DIGIT, x0:x0 + DIGIT]


def find_digits(frame: np.ndarray) -> FrameDigits:
    """The digits of a uint8 frame (H, W[, 1]), unread (see the module docstring)."""
    cv2 = require_opencv()
    f = _gray(frame)
    n, comp, stats, _ = cv2.connectedComponentsWithStats((f >= THRESHOLD).astype(np.uint8), connectivity=8)
    group, boxes = _group(stats)
    owner = group[comp]  # (H, W): each pixel's group, -1 for dim pixels
    cents, legible, crops = [], [], []
    for g, box in enumerate(boxes):
        ys, xs = np.nonzero(owner == g)
        if len(ys) < MIN_AREA:
            continue
        wgt = f[ys, xs].astype(np.float64)
        cy, cx = float((ys * wgt).sum() / wgt.sum()), float((xs * wgt).sum() / wgt.sum())
        ok = _span(box) <= MAX_EXTENT
        cents.append((cy, cx))
        legible.append(ok)
        crops.append(_crop(f, owner, g, cy, cx) if ok else np.zeros((DIGIT, DIGIT), np.float32))
    return FrameDigits(np.array(cents, np.float64).reshape(-1, 2), np.array(legible, bool),
                       np.array(crops, np.float32).reshape(-1, DIGIT, DIGIT))


def read_clip(reader: IdentityReader, clip: np.ndarray) -> list[FrameDigits]:
    """Every frame of a uint8 clip (T, H, W[, 1]) found and read: one FrameDigits per frame."""
    frames = [find_digits(f) for f in clip]
    cls, conf = read_crops(reader, np.concatenate([d.crops for d in frames]))
    start = 0
    for d in frames:
        n = len(d.legible)
        d.classes = np.where(d.legible, cls[start:start + n], -1)
        d.confidences = np.where(d.legible, conf[start:start + n], 0.0)
        start += n
    return frames


# ---------------------------------------------------------------- tracking and switches


def link(prev: np.ndarray, cur: np.ndarray, max_step: float = MAX_STEP) -> list[tuple[int, int]]:
    """One-to-one links (i, j) between centroids prev (m, 2) and cur (n, 2): closest pairs first, each within
    `max_step` pixels."""
    if len(prev) == 0 or len(cur) == 0:
        return []
    dist = np.linalg.norm(prev[:, None] - cur[None], axis=-1)  # (m, n)
    pairs, used_i, used_j = [], set(), set()
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), dist.shape[1])
        if dist[i, j] > max_step:
            break
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return pairs


def track(frames: list[FrameDigits], max_step: float = MAX_STEP) -> list[list[tuple[int, int]]]:
    """Tracks of the legible digits of a read clip: each a list of (frame t, component index) in frame order."""
    tracks: list[list[tuple[int, int]]] = []
    open_: dict[int, int] = {}  # component index in the previous frame -> its track
    prev_idx = np.zeros(0, np.int64)
    for t, d in enumerate(frames):
        idx = np.flatnonzero(d.legible)  # legible components of frame t
        now: dict[int, int] = {}
        if t > 0:
            for i, j in link(frames[t - 1].centroids[prev_idx], d.centroids[idx], max_step):
                k = open_[int(prev_idx[i])]
                tracks[k].append((t, int(idx[j])))
                now[int(idx[j])] = k
        for j in idx:
            if int(j) not in now:
                now[int(j)] = len(tracks)
                tracks.append([(t, int(j))])
        open_, prev_idx = now, idx
    return tracks


def track_switches(frames: list[FrameDigits], tracks: list[list[tuple[int, int]]],
                   level: float = CONFIDENT) -> tuple[int, int]:
    """(identity switches, tracked steps) over tracks: consecutive confident reads of a track that differ, and
    the number of such consecutive pairs."""
    switches = steps = 0
    for tr in tracks:
        reads = [int(frames[t].classes[j]) for t, j in tr if frames[t].confident(level)[j]]
        steps += max(len(reads) - 1, 0)
        switches += sum(a != b for a, b in zip(reads, reads[1:]))
    return switches, steps


def clip_identity(reader: IdentityReader, clip: np.ndarray, expected: int | None = EXPECTED,
                  level: float = CONFIDENT) -> dict:
    """Counts for one uint8 clip (T, H, W[, 1]): switches, tracked steps, confident reads, digits expected."""
    frames = read_clip(reader, clip)
    switches, steps = track_switches(frames, track(frames), level)
    per_frame = [int(d.confident(level).sum()) for d in frames]
    want = [expected if expected is not None else len(d.legible) for d in frames]
    return {"switches": switches, "tracked_steps": steps,
            "confident_reads": sum(min(c, w) for c, w in zip(per_frame, want)), "expected": sum(want)}


def summarize(counts: list[dict]) -> dict:
    """Per-clip counts (`clip_identity`) -> the figures of the clip set."""
    tot = {k: sum(c[k] for c in counts) for k in ("switches", "tracked_steps", "confident_reads", "expected")}
    return {**tot, "switches_per_100": 100 * tot["switches"] / max(tot["tracked_steps"], 1),
            "confident_share": tot["confident_reads"] / max(tot["expected"], 1)}


def identity_figures(clips: np.ndarray, reader: IdentityReader | None = None, expected: int | None = EXPECTED,
                     level: float = CONFIDENT) -> dict:
    """Identity figures of uint8 clips (N, T, H, W[, 1]): switches_per_100 (identity switches per 100 tracked
    steps), confident_share, tracked_steps, switches, confident_reads, expected, and the reader's accuracy on
    isolated held-out digits (reader_accuracy). Without a reader, the default one (trained once per process)."""
    reader = identity_reader() if reader is None else reader
    out = summarize([clip_identity(reader, c, expected, level) for c in clips])
    return {**out, "reader_accuracy": heldout_accuracy(reader)}


# ---------------------------------------------------------------- the reader's accuracy


def heldout_frames(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out digit 4000-4999 alone in a uint8 frame at a random place: (1000, size, size), and its labels."""
    digits, labels = mnist_digits("eval")
    rng = np.random.default_rng(seed)
    frames = np.zeros((len(digits), size, size), np.uint8)
    for f, d, (y, x) in zip(frames, digits, rng.integers(0, size - DIGIT + 1, (len(digits), 2))):
        f[y:y + DIGIT, x:x + DIGIT] = d
    return frames, labels


@functools.lru_cache(maxsize=4)
def _heldout_accuracy(reader: IdentityReader) -> float:
    frames, labels = heldout_frames()
    found = [find_digits(f) for f in frames]
    one = np.array([len(d.legible) == 1 and bool(d.legible[0]) for d in found])
    cls, _ = read_crops(reader, np.stack([d.crops[0] if o else np.zeros((DIGIT, DIGIT), np.float32)
                                          for d, o in zip(found, one)]))
    return float((one & (cls == labels)).mean())


def heldout_accuracy(reader: IdentityReader) -> float:
    """The share of the 1,000 held-out digits, each alone in a frame, found as one legible digit and read right."""
    return _heldout_accuracy(reader)


__all__ = ["IdentityReader", "FrameDigits", "train_identity_reader", "identity_reader", "read_crops", "find_digits",
           "read_clip", "link", "track", "track_switches", "clip_identity", "summarize", "identity_figures",
           "heldout_frames", "heldout_accuracy"]
