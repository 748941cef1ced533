"""Feasibility of an analytic layered motion codec on Moving MNIST (trial, not part of arvid).

The reference frame is split into layers (8-connected components of its ink); every later frame is coded as one
integer displacement per layer, found by search (greedy, each layer in turn, the others held), and decoded as the
max of the moved layers, which is how the clips are made. Measures PSNR and warping error / real of that
reconstruction with the true reference and with the reference decoded by the shipped tokenizer.

    python scratch/layers_diag.py [clips] [frames]
"""
import sys, time
import numpy as np, torch, cv2
from arvid.data.moving_mnist import MovingMNIST
from arvid.eval.generation import warping_error
from arvid.eval.tokenizer import psnr

torch.set_num_threads(1)


CORE, LOW, GROW = 32, 16, 2


def components(ref: np.ndarray, min_area: int = 1):
    """Layers of a reference: 8-connected cores (> CORE), grown GROW px into the soft edge (> LOW)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats((ref > CORE).astype(np.uint8), connectivity=8)
    lab = lab.astype(np.int32)
    soft = ref > LOW
    for _ in range(GROW):
        grown = cv2.dilate(lab.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
        lab = np.where((lab == 0) & soft, grown, lab)
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area]
    keep.sort(key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    return [np.where(lab == k, ref, 0).astype(np.float32) for k in keep]


def shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    H, W = img.shape
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    if H - abs(dy) > 0 and W - abs(dx) > 0:
        out[yd, xd] = img[ys, xs]
    return out


def composite(layers, disp):
    out = np.zeros_like(layers[0]) if layers else None
    for L, (dy, dx) in zip(layers, disp):
        np.maximum(out, shift(L, dy, dx), out=out)
    return out


def encode(layers, frames, R=6, passes=2):
    """Integer displacement (dy, dx) per layer per frame (T, K, 2), frame 0 = (0, 0)."""
    K, T = len(layers), len(frames)
    d = np.zeros((T, K, 2), np.int64)
    for t in range(1, T):
        pred = d[t - 1] + (d[t - 1] - d[t - 2] if t >= 2 else 0)
        cur = pred.copy()
        target = frames[t].astype(np.float32)
        for _ in range(passes):
            for k in range(K):
                others = composite([layers[j] for j in range(K) if j != k], [cur[j] for j in range(K) if j != k]) \
                    if K > 1 else np.zeros_like(target)
                best, arg = None, cur[k]
                for dy in range(cur[k][0] - R, cur[k][0] + R + 1):
                    for dx in range(cur[k][1] - R, cur[k][1] + R + 1):
                        e = ((np.maximum(others, shift(layers[k], dy, dx)) - target) ** 2).sum()
                        if best is None or e < best:
                            best, arg = e, np.array([dy, dx])
                cur[k] = arg
        d[t] = cur
    return d


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 17
    ds = MovingMNIST(frames=frames, split="eval", seed=1)
    real = np.stack([ds[i].video[..., 0] for i in range(n)])  # (N, T, H, W) uint8
    from arvid.tokenizer import Tokenizer, tensor_to_video, video_to_tensor
    tok = Tokenizer.from_pretrained("arvid/weights/default/tokenizer")
    with torch.no_grad():
        shipped = tensor_to_video(tok.decode(tok.encode(video_to_tensor(real[..., None]))))[..., 0]
    rows = {}
    t0 = time.time()
    for name, refs in (("true reference", real[:, 0]), ("decoded reference", shipped[:, 0])):
        recs, ncomp = [], []
        for clip, ref in zip(real, refs):
            layers = components(ref)
            ncomp.append(len(layers))
            d = encode(layers, clip)
            recs.append(np.stack([np.clip(np.rint(composite(layers, d[t])), 0, 255) for t in range(len(clip))]).astype(np.uint8))
        recs = np.stack(recs)
        rows[name] = (np.mean([psnr(a, b) for a, b in zip(recs, real)]),
                      np.mean([warping_error(c) for c in recs]), np.mean(ncomp), np.max(ncomp))
    wr = np.mean([warping_error(c) for c in real])
    rows["shipped tokenizer"] = (np.mean([psnr(a, b) for a, b in zip(shipped, real)]),
                                 np.mean([warping_error(c) for c in shipped]), 0, 0)
    print(f"{n} clips of {frames} frames, {time.time() - t0:.0f} s")
    for k, (p, w, c, m) in rows.items():
        print(f"{k:20s} PSNR {p:6.2f} dB  warp/real {w / wr:5.2f}x  layers mean {c:.1f} max {m}")
    ref_psnr = np.mean([psnr(a[0], b[0]) for a, b in zip(shipped, real)])
    print(f"shipped tokenizer frame-0 PSNR {ref_psnr:.2f} dB")


if __name__ == "__main__":
    main()
