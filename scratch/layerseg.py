"""Layer segmentation of a reference frame (trial, not part of arvid): which digit owns each ink pixel.

A small U-Net reads one frame and gives K + 1 channels (background, then K layer slots). Training frames are
made like Moving MNIST frames (two train digits at random places, combined by max) so each pixel's owner is
known; the loss is the cross-entropy under the best of the K! slot orders (the slots have no natural order).

    python scratch/layerseg.py --out runs/seg --minutes 12
"""
import argparse, itertools, time, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from arvid.data.moving_mnist import mnist_digits, DIGIT

LOW = 16  # uint8: darker pixels are background


def make_batch(rng, digits, n, K=2, size=64, jitter=True):
    """(frames (n, 1, H, W) float in [0, 1], owner (n, H, W) int64: 0 background, 1..K the digit)."""
    x = np.zeros((n, size, size), np.uint8)
    own = np.zeros((n, size, size), np.int64)
    for i in range(n):
        k_here = K if rng.random() < 0.9 else int(rng.integers(1, K + 1))
        stack = np.zeros((k_here, size, size), np.uint8)
        for k in range(k_here):
            y, xx = rng.integers(0, size - DIGIT + 1, size=2)
            stack[k, y:y + DIGIT, xx:xx + DIGIT] = digits[rng.integers(0, len(digits))]
        x[i] = stack.max(0)
        own[i] = np.where(x[i] > LOW, stack.argmax(0) + 1, 0)
    t = torch.from_numpy(x).float()[:, None] / 255
    if jitter:  # a decoded reference is softer and noisier than the real frame
        sig = float(rng.uniform(0, 1.0))
        if sig > 0.3:
            t = gaussian_blur(t, sig)
        t = (t + torch.from_numpy(rng.normal(0, rng.uniform(0, 0.04), t.shape)).float()).clamp(0, 1)
    return t, torch.from_numpy(own)


def gaussian_blur(t, sigma):
    r = 2
    g = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma ** 2)); g = g / g.sum()
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))


def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU(),
                         nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU())


class SegNet(nn.Module):
    def __init__(self, K=2, w=(24, 48, 96, 128)):
        super().__init__()
        self.K = K
        self.e0, self.e1, self.e2, self.e3 = block(1, w[0]), block(w[0], w[1]), block(w[1], w[2]), block(w[2], w[3])
        self.d2, self.d1, self.d0 = block(w[3] + w[2], w[2]), block(w[2] + w[1], w[1]), block(w[1] + w[0], w[0])
        self.head = nn.Conv2d(w[0], K + 1, 1)

    def forward(self, x):  # (B, 1, H, W) -> logits (B, K + 1, H, W)
        a = self.e0(x)
        b = self.e1(F.avg_pool2d(a, 2))
        c = self.e2(F.avg_pool2d(b, 2))
        d = self.e3(F.avg_pool2d(c, 2))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")
        c = self.d2(torch.cat([up(d), c], 1))
        b = self.d1(torch.cat([up(c), b], 1))
        return self.head(self.d0(torch.cat([up(b), a], 1)))


def perm_loss(logits, own, K):
    """Pixel cross-entropy under the best slot order per frame; ink pixels weigh 4x."""
    w = 1 + 3 * (own > 0).float()
    best = None
    for perm in itertools.permutations(range(1, K + 1)):
        remap = torch.tensor([0, *perm])[own]
        l = (F.cross_entropy(logits, remap, reduction="none") * w).mean((1, 2))
        best = l if best is None else torch.minimum(best, l)
    return best.mean()


@torch.no_grad()
def ink_accuracy(net, x, own):
    """Share of ink pixels given to the right digit under the best slot order, per frame, averaged."""
    pred = net(x).argmax(1)
    accs = []
    for p, o in zip(pred, own):
        ink = o > 0
        if not ink.any():
            continue
        accs.append(max(float((p[ink] == torch.tensor([0, *perm])[o[ink]]).float().mean())
                        for perm in itertools.permutations(range(1, net.K + 1))))
    return float(np.mean(accs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--K", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train, _ = mnist_digits("train")
    held, _ = mnist_digits("eval")
    vx, vo = make_batch(np.random.default_rng(123), held, 256, a.K)
    net = SegNet(a.K)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    t0, step = time.time(), 0
    import os; os.makedirs(a.out, exist_ok=True)
    while time.time() - t0 < a.minutes * 60:
        x, own = make_batch(rng, train, a.bs, a.K)
        loss = perm_loss(net(x), own, a.K)
        opt.zero_grad(); loss.backward(); opt.step()
        step += 1
        if step % 100 == 0:
            net.eval(); acc = ink_accuracy(net, vx, vo); net.train()
            print(f"step {step} {time.time() - t0:.0f}s loss {loss.item():.4f} held-out ink accuracy {acc:.4f}", flush=True)
            torch.save(net.state_dict(), f"{a.out}/seg.pt")
    torch.save(net.state_dict(), f"{a.out}/seg.pt")


if __name__ == "__main__":
    main()
