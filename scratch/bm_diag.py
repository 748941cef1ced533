"""How right is block matching? Its flow against the true displacement of the digit that owns each cell."""
import sys; sys.path.insert(0, "scratch")
import numpy as np, torch
from blockmatch import block_match
from arvid.data.moving_mnist import MovingMNIST, bounce_path, DIGIT
from arvid.data.base import clip_rng
torch.set_num_threads(1)
ds = MovingMNIST(frames=17, split="eval", seed=1)
errs, n_ok = [], 0
for i in range(12):
    rng = clip_rng(ds.seed, ds.split, i)
    which = rng.integers(0, len(ds.digits), size=2)
    paths, owner = [], np.full((17, 64, 64), -1)
    best = np.zeros((17, 64, 64))
    for k, d in enumerate(which):
        p = bounce_path(rng, 17, 64 - DIGIT, 64 - DIGIT, ds.speed); paths.append(p)
        for t, (y, x) in enumerate(p):
            patch = ds.digits[d].astype(float)
            reg = best[t, y:y + DIGIT, x:x + DIGIT]; o = owner[t, y:y + DIGIT, x:x + DIGIT]
            m = patch > reg; reg[m] = patch[m]; o[m] = k
    v = torch.from_numpy(ds.clip(i).video[..., 0]).float().div(127.5).sub(1)[None]  # (1, 17, 64, 64)
    f, w = block_match(v[:, :1], v[:, 1:])
    for t in range(16):
        for cy in range(16):
            for cx in range(16):
                if w[0, 0, t, cy, cx] == 0: continue
                o = owner[t + 1, cy * 4:cy * 4 + 4, cx * 4:cx * 4 + 4]
                o = o[o >= 0]
                if len(o) == 0: continue
                k = np.bincount(o).argmax()
                true = paths[k][0] - paths[k][t + 1]
                e = np.abs(f[0, :, t, cy, cx].numpy() - true).mean()
                errs.append(e)
errs = np.array(errs)
print("cells", len(errs), "mean L1 px", errs.mean(), "median", np.median(errs), "share exact(<=0.5)", (errs <= 0.5).mean(), "share >4px", (errs > 4).mean())
