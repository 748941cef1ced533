"""Layered reference codec (trial, not part of arvid): appearance from one reference frame, motion as positions.

A clip is coded as its first frame's 8x8 codes (the shipped tokenizer, so the shipped generator's frame 0
carries over) and, for every frame, the position of each of K layers. The layers are the reference's ink
split by a segmentation net (scratch/layerseg.py) into K slots; a layer's position is the top-left corner of
its ink box (0..63, ABSENT when the slot is empty). Decoding moves each layer of the decoded reference to its
position and combines them by max, as Moving MNIST frames are made: a digit can move but never be redrawn.

Token layout for the generator, (1 + T/16, 8, 8) per clip of T frames (T a multiple of 16): latent frame 0 is
the reference's codes (0..239); each later latent frame holds 16 frames x K=2 layers x (y, x), as codes
240 + position.

    python scratch/layered.py recon [--clips 16 --frames 17]     # tokenizer figures on held-out clips
    python scratch/layered.py data --out runs/lay-tokens --clips 4000 --frames 96
"""
import argparse, sys, time, json, os
import numpy as np, torch, cv2

sys.path.insert(0, os.path.dirname(__file__))
from layerseg import SegNet, LOW
from arvid.data.moving_mnist import MovingMNIST, bounce_path, DIGIT
from arvid.data.base import clip_rng
from arvid.tokenizer import Tokenizer

CODES, K, ABSENT = 240, 2, 64
VOCAB = CODES + ABSENT + 1
PER_LATENT = 16  # frames of positions per latent frame: 16 x K x 2 = 64 = 8x8
SEG = "scratch/checkpoints/layer-seg.safetensors"
REF_DECODER = "scratch/checkpoints/reference-decoder.safetensors"


class Codec:
    def __init__(self, seg=SEG, ref_decoder=REF_DECODER):
        from safetensors.torch import load_file
        self.tok = Tokenizer.from_pretrained("arvid/weights/default/tokenizer").eval()
        self.dec = self.tok
        if ref_decoder and ref_decoder.endswith(".safetensors"):  # the decoder's weights only
            self.dec = Tokenizer.from_pretrained("arvid/weights/default/tokenizer").eval()
            self.dec.load_state_dict(load_file(ref_decoder), strict=False)
        elif ref_decoder:
            self.dec = Tokenizer.from_pretrained(ref_decoder).eval()
        self.seg = SegNet(K)
        self.seg.load_state_dict(load_file(seg) if seg.endswith(".safetensors") else torch.load(seg))
        self.seg.eval()

    @torch.no_grad()
    def ref_codes(self, frames0: np.ndarray) -> torch.Tensor:
        """frames0 uint8 (B, H, W) -> codes (B, 8, 8)."""
        x = torch.from_numpy(frames0).float().div(127.5).sub(1)[:, None, None]  # (B, 1, 1, H, W)
        return self.tok.encode(x)[:, 0]

    @torch.no_grad()
    def ref_pixels(self, codes: torch.Tensor) -> np.ndarray:
        """codes (B, 8, 8) -> uint8 (B, H, W)."""
        y = self.dec.decode(codes[:, None])[:, 0, 0]
        return ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    @torch.no_grad()
    def layers(self, refs: np.ndarray):
        """refs uint8 (B, H, W) -> layers float (B, K, H, W), boxes int (B, K, 2) (-1: empty slot).

        Where the reference's ink falls into at least two separate pieces, the layers are those pieces (the
        largest K; smaller ones join the nearest); otherwise the segmentation net splits it."""
        lay = np.zeros((len(refs), K, *refs.shape[1:]), np.float32)
        box = -np.ones((len(refs), K, 2), np.int64)
        for b in range(len(refs)):
            slot = component_slots(refs[b])
            if slot is None:
                logits = self.seg(torch.from_numpy(refs[b:b + 1]).float()[:, None] / 255)
                slot = np.where(refs[b] > LOW, logits[0, 1:].argmax(0).numpy() + 1, 0)
            for k in range(K):
                m = slot == k + 1
                if m.sum() < 4:
                    continue
                lay[b, k] = np.where(m, refs[b], 0)
                ys, xs = np.nonzero(m)
                box[b, k] = ys.min(), xs.min()
        return lay, box


CORE, AREA, GROW = 40, 25, 4


def component_slots(ref):
    """Slot map (H, W) (0 background, 1..K) from the reference's separate pieces of ink, or None if fewer than 2."""
    n, lab, st, cen = cv2.connectedComponentsWithStats((ref > CORE).astype(np.uint8), connectivity=8)
    big = [k for k in range(1, n) if st[k, cv2.CC_STAT_AREA] >= AREA]
    if len(big) < 2:
        return None
    big.sort(key=lambda k: -st[k, cv2.CC_STAT_AREA])
    keep = big[:K]
    gaps = [cv2.distanceTransform((lab != q).astype(np.uint8), cv2.DIST_L2, 3) for q in keep]
    remap = np.zeros(n, np.int64)
    for k in range(1, n):  # every other piece joins the kept one it is closest to (smallest gap)
        if st[k, cv2.CC_STAT_AREA] == 0:
            continue
        m = lab == k
        j = keep.index(k) if k in keep else int(np.argmin([g[m].min() for g in gaps]))
        remap[k] = j + 1
    slot = remap[lab]
    soft = ref > LOW
    for _ in range(GROW):  # the soft edge around the cores
        grown = cv2.dilate(slot.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int64)
        slot = np.where((slot == 0) & soft, grown, slot)
    return np.where(soft, slot, 0)


def second_piece(frame):
    """Area of the second-largest piece of ink (0 if fewer than two pieces of at least AREA px)."""
    n, _, st, _ = cv2.connectedComponentsWithStats((frame > CORE).astype(np.uint8), connectivity=8)
    areas = np.sort(st[1:, cv2.CC_STAT_AREA])[::-1]
    return int(areas[1]) if len(areas) >= 2 and areas[1] >= AREA else 0


def choose_decoded_reference(codec, frames, lookahead=16):
    """(r, codes (8, 8)): the frame within lookahead whose *decoded* ink is most clearly in separate pieces."""
    n = min(lookahead, len(frames))
    codes = codec.ref_codes(np.ascontiguousarray(frames[:n]))
    dec = codec.ref_pixels(codes)
    score = [second_piece(d) for d in dec]
    r = int(np.argmax(score)) if max(score) > 0 else 0
    return r, codes[r]


def choose_reference(frames, lookahead=16):
    """The frame (within lookahead) whose ink is most clearly in separate pieces: the largest second-largest
    piece (a digit touching another loses pieces to it); the earliest of equals; 0 if none is separate."""
    best, arg = 0, 0
    for t in range(min(lookahead, len(frames))):
        n, _, st, _ = cv2.connectedComponentsWithStats((frames[t] > CORE).astype(np.uint8), connectivity=8)
        areas = np.sort(st[1:, cv2.CC_STAT_AREA])[::-1]
        if len(areas) >= 2 and areas[1] >= AREA and areas[1] > best:
            best, arg = areas[1], t
    return arg


def shift(img, dy, dx):
    out = np.zeros_like(img)
    H, W = img.shape
    if abs(dy) >= H or abs(dx) >= W:
        return out
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = img[ys, xs]
    return out


def render(lay, box, pos):
    """One frame: layers (K, H, W) moved from their boxes (K, 2) to positions (K, 2), combined by max. A position
    that would push a layer's ink out of the frame is held at the edge (no clip's digit ever leaves it)."""
    H, W = lay.shape[1:]
    out = np.zeros((H, W), np.float32)
    for k in range(K):
        if box[k, 0] >= 0 and pos[k, 0] < ABSENT:
            ys, xs = np.nonzero(lay[k])
            h, w = ys.max() - box[k, 0], xs.max() - box[k, 1]
            y, x = min(max(int(pos[k, 0]), 0), H - 1 - h), min(max(int(pos[k, 1]), 0), W - 1 - w)
            np.maximum(out, shift(lay[k], y - box[k, 0], x - box[k, 1]), out=out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def search(lay, box, frames, r=0, R=6, passes=2):
    """Positions (T, K, 2) that best render each frame (greedy per layer, others held; frame r = the boxes),
    from the reference frame r forward to the end, then back to frame 0."""
    T = len(frames)
    pos = np.full((T, K, 2), ABSENT, np.int64)
    live = [k for k in range(K) if box[k, 0] >= 0]
    pos[r, live] = box[live]
    order = [(t, t - 1, t - 2) for t in range(r + 1, T)] + [(t, t + 1, t + 2) for t in range(r - 1, -1, -1)]
    for t, p1, p2 in order:
        known = p2 >= r if t > r else p2 <= r  # p2 already coded: predict with the velocity
        cur = pos[p1] + (pos[p1] - pos[p2]) if known else pos[p1].copy()
        cur[[k for k in range(K) if k not in live]] = ABSENT
        target = frames[t].astype(np.float32)
        for _ in range(passes):
            for k in live:
                others = np.zeros_like(target)
                for j in live:
                    if j != k:
                        np.maximum(others, shift(lay[j], int(cur[j, 0] - box[j, 0]), int(cur[j, 1] - box[j, 1])), out=others)
                best, arg = None, cur[k]
                for y in range(cur[k, 0] - R, cur[k, 0] + R + 1):
                    for x in range(cur[k, 1] - R, cur[k, 1] + R + 1):
                        if not (0 <= y < ABSENT and 0 <= x < ABSENT):
                            continue
                        e = ((np.maximum(others, shift(lay[k], y - box[k, 0], x - box[k, 1])) - target) ** 2).sum()
                        if best is None or e < best:
                            best, arg = e, np.array([y, x])
                cur[k] = arg
        pos[t] = cur
    return pos


def digit_paths(ds, i):
    """The clip generator's own digits: (patches (n, 28, 28) uint8, top-left paths (n, T, 2)) of clip i."""
    rng = clip_rng(ds.seed, ds.split, i)
    which = rng.integers(0, len(ds.digits), size=ds.num_digits)
    paths = [bounce_path(rng, ds.frames, ds.height - DIGIT, ds.width - DIGIT, ds.speed) for _ in which]
    return ds.digits[which], np.stack(paths)


def oracle_positions(ds, i, lay, box, r=0):
    """Positions (T, K, 2) from the clip generator's paths: each slot follows the digit its ink overlaps most."""
    patches, paths = digit_paths(ds, i)
    own = np.zeros((len(patches), ds.height, ds.width), np.float32)
    for n, (p, (y, x)) in enumerate(zip(patches, paths[:, r])):
        own[n, y:y + DIGIT, x:x + DIGIT] = p
    owner = own.argmax(0)
    pos = np.full((ds.frames, K, 2), ABSENT, np.int64)
    for k in range(K):
        if box[k, 0] < 0:
            continue
        m = lay[k] > 0
        d = int(np.bincount(owner[m], minlength=len(patches)).argmax())
        pos[:, k] = np.clip(box[k] + paths[d] - paths[d, r], 0, ABSENT - 1)
    return pos


def to_tokens(codes, pos):
    """codes (8, 8), positions (T, K, 2), T % 16 == 0 -> tokens (1 + T/16, 8, 8)."""
    T = len(pos)
    motion = (CODES + pos).reshape(T // PER_LATENT, 8, 8)
    return np.concatenate([np.asarray(codes)[None], motion])


def from_tokens(tokens):
    """tokens (n, 8, 8) -> codes (8, 8), positions (16 (n-1), K, 2); stray codes of the wrong kind fixed."""
    codes = np.where(tokens[0] < CODES, tokens[0], 0)
    pos = tokens[1:].reshape(-1, K, 2) - CODES
    bad = pos < 0
    pos = np.where(bad, ABSENT, pos)
    return codes, pos, int(bad.sum() + (tokens[0] >= CODES).sum())


def build(a):
    c = Codec(a.seg, a.ref_decoder)
    torch.set_num_threads(1)
    for split, n in (("train", a.clips), ("eval", a.eval_clips)):
        ds = MovingMNIST(frames=a.frames, split=split, seed=0)
        toks, labs, t0 = [], [], time.time()
        for i in range(n):
            clip = ds[i]
            v = clip.video[..., 0]
            m = min(a.lookahead, len(v))
            codes = c.ref_codes(np.ascontiguousarray(v[:m]))
            dec = c.ref_pixels(codes)
            score = np.array([second_piece(d) for d in dec])
            order = [int(r) for r in np.argsort(-score, kind="stable") if score[r] > 0][:a.refs if split == "train" else 1] or [0]
            for r in order:  # the clearest frame first; more references of the same motion with --refs
                lay, box = c.layers(dec[r:r + 1])
                toks.append(to_tokens(codes[r].numpy(), oracle_positions(ds, i, lay[0], box[0], r)))
                labs.append(clip.labels)
            if i % 250 == 0:
                print(split, i, f"{time.time() - t0:.0f}s", flush=True)
        from arvid.train.tokens import write_token_dataset
        write_token_dataset(f"{a.out}-{split}", np.stack(toks), np.stack(labs), VOCAB, 10,
                            source={"prototype": "scratch/layered.py", "frames": a.frames, "seg": a.seg})


def recon(a):
    from arvid.eval.generation import warping_error
    from arvid.eval.tokenizer import psnr
    from arvid.eval.identity import identity_figures, identity_reader
    from arvid.tokenizer import tensor_to_video, video_to_tensor
    c = Codec(a.seg, a.ref_decoder)
    torch.set_num_threads(1)
    ds = MovingMNIST(frames=a.frames, split="eval", seed=1)
    real = np.stack([ds[i].video[..., 0] for i in range(a.clips)])
    chosen = [choose_decoded_reference(c, v, a.lookahead) for v in real]
    refs = [r for r, _ in chosen]
    codes = torch.stack([k for _, k in chosen])
    lay, box = c.layers(c.ref_pixels(codes))
    rec, t0 = [], time.time()
    for j in range(a.clips):
        pos = search(lay[j], box[j], real[j], r=refs[j])
        rec.append(np.stack([render(lay[j], box[j], p) for p in pos]))
    rec = np.stack(rec)
    with torch.no_grad():
        shipped = tensor_to_video(c.tok.decode(c.tok.encode(video_to_tensor(real[..., None]))))[..., 0]
    wr = np.mean([warping_error(x) for x in real])
    out = {"seconds": time.time() - t0, "reference_frames": refs}
    reader = identity_reader() if a.identity else None
    for name, v in (("layered", rec), ("shipped", shipped)):
        out[name] = {"psnr": float(np.mean([psnr(x, y) for x, y in zip(v, real)])),
                     "warp_ratio": float(np.mean([warping_error(x) for x in v]) / wr),
                     "psnr_per_clip": [round(psnr(x, y), 1) for x, y in zip(v, real)]}
        if reader is not None:
            out[name].update(identity_figures(v[..., None], reader))
    if reader is not None:
        out["real"] = identity_figures(real[..., None], reader)
    print(json.dumps(out, indent=1))
    if a.sheet:
        from arvid.video.sheet import clips_sheet
        clips_sheet([v[..., None] for v in (real[0], rec[0], real[1], rec[1], real[2], rec[2])], a.sheet,
                    titles=["real", "layered", "real", "layered", "real", "layered"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["recon", "data"])
    ap.add_argument("--seg", default=SEG)
    ap.add_argument("--ref-decoder", default=REF_DECODER)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--eval-clips", type=int, default=256)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--out")
    ap.add_argument("--sheet")
    ap.add_argument("--identity", action="store_true")
    ap.add_argument("--lookahead", type=int, default=16)
    ap.add_argument("--refs", type=int, default=1, help="data: references per train clip (the clearest frames)")
    a = ap.parse_args()
    recon(a) if a.what == "recon" else build(a)
