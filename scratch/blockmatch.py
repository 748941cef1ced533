"""Block matching (coarse-to-fine, full search): for every 4x4 cell of a target frame, the displacement to the
8x8 patch of the reference that matches it best. Training target for the decoder's flow (no gradients)."""
import torch
import torch.nn.functional as F


@torch.no_grad()
def block_match(ref, tgt, radius=2):
    """ref (B, 1, H, W), tgt (B, T, H, W) in [-1, 1] -> flow (B, 2, T, H/4, W/4) in pixels (dy, dx) with
    tgt(p) ~ ref(p + flow), and weight (B, 1, T, H/4, W/4): the cell has content and matched well."""
    B, T, H, W = tgt.shape
    r01, t01 = (ref + 1) / 2, (tgt.reshape(B * T, 1, H, W) + 1) / 2
    # coarse: 1/4 resolution, 3x3 patches around each cell, every position of the reference
    rc, tc = F.avg_pool2d(r01, 4), F.avg_pool2d(t01, 4)  # (B, 1, h, w), (BT, 1, h, w)
    h, w = H // 4, W // 4
    tp = F.unfold(tc, 3, padding=1).view(B, T, 9, h * w)  # (B, T, 9, L)
    rp = F.unfold(rc, 3, padding=1)  # (B, 9, L) positions = cells
    ssd = (tp * tp).sum(2)[..., None] + (rp * rp).sum(1)[:, None, None, :] \
        - 2 * torch.einsum("btpl,bpm->btlm", tp, rp)  # (B, T, L, M)
    best = ssd.argmin(-1)  # (B, T, L)
    cy = (best // w) * 4 - (torch.arange(h * w) // w * 4)  # coarse flow in pixels
    cx = (best % w) * 4 - (torch.arange(h * w) % w * 4)
    # fine: full resolution, 8x8 patches centred on the cell, +-radius around the coarse match
    pad = 2 + 4 + 4 * 2  # room for patches and the search
    tpf = F.unfold(t01, 8, padding=2, stride=4).view(B, T, 64, h * w)  # patch of cell (i,j): top-left (4i-2, 4j-2)
    rpad = F.pad(r01, (pad, pad, pad, pad))
    Hp = H + 2 * pad
    rall = F.unfold(rpad, 8)  # (B, 64, M') top-left positions of padded ref, side Hp-7
    side = Hp - 7
    d = torch.arange(-radius, radius + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    dy, dx = dy.reshape(-1), dx.reshape(-1)  # (K,)
    iy = (torch.arange(h * w) // w * 4 - 2)  # (L,) top-left of target patches
    ix = (torch.arange(h * w) % w * 4 - 2)
    flows, weights = [], []
    for b in range(B):
        tq = tpf[b].transpose(1, 2).reshape(T * h * w, 64)  # (T·L, 64) target patches
        live = tq.mean(-1) > 0.03  # cells with content: the only ones matched finely
        sel = live.nonzero()[:, 0]
        lc = sel % (h * w)  # cell index of each live patch
        y = (iy[lc] + cy[b].reshape(-1)[sel])[:, None] + dy  # (n, K) top-left in ref coords
        x = (ix[lc] + cx[b].reshape(-1)[sel])[:, None] + dx
        y, x = y.clamp(-pad, H + pad - 8), x.clamp(-pad, W + pad - 8)
        idx = ((y + pad) * side + (x + pad))  # (n, K)
        rows = rall[b].t().contiguous()  # (M', 64)
        rn = (rows * rows).sum(1)  # (M',)
        t = tq[sel]  # (n, 64)
        diff = rn[idx] - 2 * torch.einsum("nkp,np->nk", rows[idx], t) + (t * t).sum(-1, keepdim=True)
        k = diff.argmin(-1, keepdim=True)  # (n, 1)
        fy = torch.zeros(T * h * w); fx = torch.zeros(T * h * w); wgt = torch.zeros(T * h * w)
        fy[sel] = (torch.gather(y, 1, k)[:, 0] - iy[lc]).float()
        fx[sel] = (torch.gather(x, 1, k)[:, 0] - ix[lc]).float()
        err = torch.gather(diff, 1, k)[:, 0]
        wgt[sel] = (err < 0.5 * (t * t).sum(-1)).float()
        flows.append(torch.stack([fy, fx], 0).view(2, T, h, w))
        weights.append(wgt.view(1, T, h, w))
    return torch.stack(flows), torch.stack(weights)
