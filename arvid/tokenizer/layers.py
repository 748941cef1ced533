"""Splitting a reference picture into layers: which moving object owns each pixel of ink.

    slots = split_layers(ref, k, net)     # ref float (H, W) in [0, 255] -> int64 (H, W): 0 background, 1..k a layer

Where the ink falls into at least two separate pieces, the layers are those pieces: the k largest, each
smaller piece joining the kept piece it is closest to, then grown over the soft edge of the strokes. Where
the ink is one piece (objects touching or on top of each other), a small U-Net (`LayerNet`) gives each ink pixel
its owner. The layered tokenizer (`arvid.tokenizer.layered`) moves the layers; this file only finds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class InkRule:
    """What counts as ink, in 8-bit pixel values, and how pieces are kept."""

    core: int = 40  # a piece is the 8-connected pixels above this value
    low: int = 16  # pixels at or below this are background
    area: int = 25  # pieces smaller than this (pixels) join a kept piece
    grow: int = 4  # steps of growing the kept pieces over the soft edge (pixels above `low`)
    stroke: int = 128  # pixels at or above this are the strokes themselves
    speck: int = 16  # a piece of stroke smaller than this (pixels) is a speck
    blot: float = 0.1  # a piece of stroke covering more than this share of the frame is a blot, not an object


def pieces(frame: np.ndarray, rule: InkRule, level: int | None = None) -> np.ndarray:
    """Areas of the separate pieces (8-connected) of a frame (H, W) above `level` (default `rule.core`), largest
    first."""
    mask = frame > rule.core if level is None else frame >= level
    n, _, st, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return np.sort(st[1:, cv2.CC_STAT_AREA])[::-1]


def separation(frame: np.ndarray, rule: InkRule) -> int:
    """How clearly a frame's ink is in separate pieces: the area of its second-largest piece (0 if fewer than two
    pieces of at least `rule.area` pixels). A piece that touches another loses its pixels to it."""
    areas = pieces(frame, rule)
    return int(areas[1]) if len(areas) >= 2 and areas[1] >= rule.area else 0


def count_pieces(frame: np.ndarray, rule: InkRule) -> int:
    """The number of pieces of at least `rule.area` pixels."""
    return int((pieces(frame, rule) >= rule.area).sum())


def well_drawn(picture: np.ndarray, k: int, rule: InkRule) -> bool:
    """Whether a reference picture (H, W) in [0, 255] holds k objects drawn whole: its ink in k separate pieces,
    and its strokes too (k pieces of at least `rule.speck` pixels: no object broken, no specks of stroke), none of
    them a blot (over `rule.blot` of the frame)."""
    strokes = pieces(picture, rule, rule.stroke)
    return (count_pieces(picture, rule) == k and int((strokes >= rule.speck).sum()) == k
            and (len(strokes) == 0 or strokes[0] <= rule.blot * picture.size))


def piece_slots(ref: np.ndarray, k: int, rule: InkRule) -> np.ndarray | None:
    """Slot map (H, W) (0 background, 1..k) from the reference's separate pieces, or None if fewer than two."""
    n, lab, st, _ = cv2.connectedComponentsWithStats((ref > rule.core).astype(np.uint8), connectivity=8)
    big = [j for j in range(1, n) if st[j, cv2.CC_STAT_AREA] >= rule.area]
    if len(big) < 2:
        return None
    big.sort(key=lambda j: -st[j, cv2.CC_STAT_AREA])
    keep = big[:k]
    gaps = [cv2.distanceTransform((lab != q).astype(np.uint8), cv2.DIST_L2, 3) for q in keep]
    remap = np.zeros(n, np.int64)
    for j in range(1, n):  # every other piece joins the kept one it is closest to (smallest gap)
        mask = lab == j
        remap[j] = keep.index(j) + 1 if j in keep else int(np.argmin([g[mask].min() for g in gaps])) + 1
    slot = remap[lab]
    soft = ref > rule.low
    for _ in range(rule.grow):  # the soft edge around the cores
        grown = cv2.dilate(slot.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int64)
        slot = np.where((slot == 0) & soft, grown, slot)
    return np.where(soft, slot, 0)


def _block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU(),
                         nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU())


class LayerNet(nn.Module):
    """A U-Net of three poolings: a frame (B, 1, H, W) in [0, 1] -> logits (B, k + 1, H, W) (background, then k
    layer slots). H and W must be multiples of 8. Trained on frames made like Moving MNIST frames, whose owners
    are known, under the best of the k! slot orders."""

    def __init__(self, k: int = 2, widths: tuple[int, ...] = (24, 48, 96, 128)):
        super().__init__()
        w = widths
        self.k = k
        self.e0, self.e1, self.e2, self.e3 = _block(1, w[0]), _block(w[0], w[1]), _block(w[1], w[2]), _block(w[2], w[3])
        self.d2, self.d1, self.d0 = _block(w[3] + w[2], w[2]), _block(w[2] + w[1], w[1]), _block(w[1] + w[0], w[0])
        self.head = nn.Conv2d(w[0], k + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e0(x)  # (B, w0, H, W)
        b = self.e1(F.avg_pool2d(a, 2))  # (B, w1, H/2, W/2)
        c = self.e2(F.avg_pool2d(b, 2))  # (B, w2, H/4, W/4)
        d = self.e3(F.avg_pool2d(c, 2))  # (B, w3, H/8, W/8)
        c = self.d2(torch.cat([F.interpolate(d, scale_factor=2.0, mode="nearest"), c], 1))
        b = self.d1(torch.cat([F.interpolate(c, scale_factor=2.0, mode="nearest"), b], 1))
        return self.head(self.d0(torch.cat([F.interpolate(b, scale_factor=2.0, mode="nearest"), a], 1)))


@torch.no_grad()
def split_layers(ref: np.ndarray, k: int, net: LayerNet | None, rule: InkRule) -> np.ndarray:
    """ref float (H, W) in [0, 255] -> slot map int64 (H, W): 0 background, 1..k a layer (some may be empty)."""
    slot = piece_slots(ref, k, rule) if k > 1 else None
    if slot is not None:
        return slot
    ink = ref > rule.low
    if k == 1 or net is None:
        return ink.astype(np.int64)
    device = next(net.parameters()).device
    logits = net(torch.as_tensor(ref, dtype=torch.float32, device=device)[None, None] / 255)  # (1, k + 1, H, W)
    owner = logits[0, 1:].argmax(0).cpu().numpy() + 1
    return np.where(ink, owner, 0)


__all__ = ["InkRule", "LayerNet", "count_pieces", "piece_slots", "separation", "split_layers", "well_drawn"]
