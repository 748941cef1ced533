"""Generate with a generator trained on layered tokens (trial); measure warping, labels, identity, continuation.

    python scratch/layered_gen.py --gen runs/lay-gen --clips 32 --frames 64 [--sheet runs/lay.png]
"""
import argparse, sys, json, time
import numpy as np, torch
sys.path.insert(0, "scratch")
from layered import Codec, from_tokens, render, search, CODES, PER_LATENT, K, ABSENT, SEG, REF_DECODER
from arvid.generator import Generator
from arvid.generator.sampler import generate
from arvid.generator.sampling import Sampling
from arvid.eval.generation import warping_error, motion
from arvid.data.moving_mnist import MovingMNIST
from arvid.eval.digits import train_reader, label_hits
from arvid.eval.identity import identity_figures, identity_reader


def decode(c, tokens, frames, ref=None):
    """tokens (B, n, 8, 8) -> uint8 (B, frames, H, W); ref: pixels to use instead of the decoded codes."""
    out, bad = [], 0
    tokens = np.asarray(tokens).astype(np.int64)
    codes = torch.from_numpy(np.stack([from_tokens(t)[0] for t in tokens]))
    refs = c.ref_pixels(codes) if ref is None else ref
    lay, box = c.layers(refs)
    for j, t in enumerate(tokens):
        _, pos, b = from_tokens(t)
        bad += b
        pos = pos[:frames].copy()
        for f in range(1, len(pos)):  # a slot the reference has but the tokens left out: hold it
            miss = (pos[f, :, 0] >= ABSENT) & (box[j, :, 0] >= 0)
            pos[f, miss] = pos[f - 1, miss]
        out.append(np.stack([render(lay[j], box[j], p) for p in pos]))
    return np.stack(out), bad


@torch.no_grad()
def continue_positions(g, prefix, labels, n_new, temperature=1.0, seed=0):
    """Raster sampling of n_new tokens after prefix (B, L) (no cache), position codes only."""
    gen = torch.Generator().manual_seed(seed)
    from arvid.generator.model import slot_inputs
    seq = prefix.clone()
    for _ in range(n_new):
        inp = torch.nn.functional.pad(seq, (1, 0), value=g.config.bos_token)
        logits = g(inp, labels)[:, -1]
        logits[:, :CODES] = -float("inf")
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)
        seq = torch.cat([seq, nxt], 1)
    return seq


@torch.no_grad()
def pick_reference(g, c, lab, n, sampling, seed):
    """Best of n drawn references per clip: (B, 8, 8). A candidate must decode into exactly K separate pieces (the
    layers the codec moves); among those, the one the model itself finds most like its labels wins:
    log p(x | labels) - log p(x | no labels), the implicit classifier of classifier-free guidance."""
    from arvid.generator.model import slot_inputs
    from layered import AREA, CORE
    import cv2
    B = len(lab)
    labn = lab.repeat_interleave(n, 0)
    cand = torch.stack(list(generate(g, 1, sampling, batch=B * n, labels=labn, seed=seed)), 1)  # (B n, 1, 8, 8)
    pix = c.ref_pixels(torch.where(cand[:, 0] < CODES, cand[:, 0], 0))
    pieces = np.array([int((cv2.connectedComponentsWithStats((p > CORE).astype(np.uint8), connectivity=8)[2][1:, 4]
                            >= AREA).sum()) for p in pix])
    flat = cand.reshape(B * n, -1)
    inp = slot_inputs(flat, g.config.bos_token)
    def lp(l):
        return torch.log_softmax(g(inp, l).float(), -1).gather(-1, flat[..., None])[..., 0].sum(1)
    score = (lp(labn) - lp(g.null_labels(B * n))).numpy()
    score = np.where(pieces == K, score, score - 1e6)
    best = score.reshape(B, n).argmax(1)
    return cand.reshape(B, n, 1, 8, 8)[torch.arange(B), torch.from_numpy(best)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True); ap.add_argument("--seg", default=SEG)
    ap.add_argument("--ref-decoder", default=REF_DECODER)
    ap.add_argument("--clips", type=int, default=32); ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--guidance", type=float, default=1.0); ap.add_argument("--sheet")
    ap.add_argument("--threads", type=int, default=1); ap.add_argument("--continuation", type=int, default=16)
    ap.add_argument("--long", type=int, default=0); ap.add_argument("--long-frames", type=int, default=1024)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--ref-candidates", type=int, default=1, help="best of N references (pieces, implicit classifier)")
    ap.add_argument("--motion-temperature", type=float, default=1.0)
    ap.add_argument("--ref-guidance", default="1", help="guidance of the reference frame alone, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c, g = Codec(a.seg, a.ref_decoder), Generator.from_pretrained(a.gen).eval()
    ds = MovingMNIST(frames=a.frames, split="eval", seed=1)
    real = np.stack([ds[i].video for i in range(a.clips)])
    labels = np.stack([ds[i].labels for i in range(a.clips)])
    n_latent = 1 + -(-a.frames // PER_LATENT)
    reader, idr = train_reader(size=64, steps=1200, seed=0), identity_reader()

    def figures(v):
        hits = label_hits(reader, v.reshape(-1, 64, 64), np.repeat(labels, v.shape[1], axis=0))
        r = {"warp": float(np.mean([warping_error(x) for x in v])), "motion": float(np.mean([motion(x) for x in v])),
             "labels": float(hits.mean())}
        r.update({k: v2 for k, v2 in identity_figures(v[..., None], idr).items()
                  if k in ("switches_per_100", "confident_share", "tracked_steps", "switches")})
        return r

    res = {"real": figures(real[..., 0])}
    for spec in a.ref_guidance.split(","):  # "G" or "G:T": guidance and temperature of the reference frame
        rg, rt = (float(x) for x in (spec.split(":") + ["1"])[:2])
        t0, toks = time.time(), []
        for s in range(0, a.clips, 16):
            lab = torch.as_tensor(labels[s:s + 16])
            if a.ref_candidates > 1:
                ref = pick_reference(g, c, lab, a.ref_candidates, Sampling(guidance=rg, temperature=rt), s)
            else:
                ref = torch.stack(list(generate(g, 1, Sampling(guidance=rg, temperature=rt), batch=len(lab),
                                                labels=lab, seed=s)), 1)  # the reference, guided on its own
            rest = torch.stack(list(generate(g, n_latent - 1, Sampling(guidance=a.guidance, temperature=a.motion_temperature), labels=lab, seed=s + 1,
                                             context=ref)), 1)
            toks.append(torch.cat([ref, rest], 1).numpy())
        gen, bad = decode(c, np.concatenate(toks), a.frames)
        el = time.time() - t0
        r = figures(gen)
        r.update({"ref_guidance": rg, "ref_temperature": rt, "guidance": a.guidance, "gen_seconds": round(el, 1),
                  "frames_per_s": round(a.clips * a.frames / el, 1), "stray_tokens": bad,
                  "warp_ratio": r["warp"] / res["real"]["warp"]})
        res[f"generated, reference guidance {rg:g} temperature {rt:g}"] = r
        if a.sheet:
            from arvid.video.sheet import clips_sheet
            clips_sheet([real[0]] + [v[..., None] for v in gen[:4]], a.sheet.replace(".png", f"-g{rg:g}-t{rt:g}.png"),
                        titles=["real"] + [f"generated (labels {l[0]}, {l[1]})" for l in labels[:4]])
    if a.continuation:  # 10 given frames (the reference is the first, in pixels), 10 predicted
        n = a.continuation
        given, future = real[:n, :10, ..., 0], real[:n, 10:20, ..., 0]
        from layered import second_piece
        refs = [int(np.argmax([second_piece(f) for f in v])) for v in given]  # the clearest given frame
        codes = c.ref_codes(np.stack([v[r] for v, r in zip(given, refs)]))
        lay, box = c.layers(np.stack([v[r] for v, r in zip(given, refs)]))  # in pixels, unquantized
        pos = np.stack([search(lay[j], box[j], given[j], r=refs[j]) for j in range(n)])  # (n, 10, K, 2)
        prefix = torch.cat([codes.reshape(n, -1), torch.from_numpy(CODES + pos.reshape(n, -1))], 1)
        seq = continue_positions(g, prefix, torch.as_tensor(labels[:n]), 10 * K * 2, a.motion_temperature)
        newpos = (seq[:, -10 * K * 2:] - CODES).reshape(n, 10, K, 2).numpy()
        pred = np.stack([[render(lay[j], box[j], p) for p in newpos[j]] for j in range(n)])
        mse = float(((pred.astype(np.float64) - future) ** 2).mean() / 255**2)
        copy = float(((given[:, -1:].astype(np.float64) - future) ** 2).mean() / 255**2)
        res["continuation"] = {"mse": mse, "copy_last_mse": copy, "ratio": mse / copy}
    if a.long:  # collapse on long clips, the rule of `arvid eval generation` (bounds from 16 real clips of 256)
        from arvid.eval.generation import BlockStats, collapse_rule, collapsed
        lr = MovingMNIST(frames=256, split="eval", seed=3)
        rs = BlockStats(16)
        rv = np.stack([lr[i].video for i in range(16)])
        for t in range(rv.shape[1]):
            rs.push(rv[:, t])
        rule = collapse_rule(*rs.arrays()[:2])
        lab = torch.as_tensor(labels[:a.long])
        toks = torch.stack(list(generate(g, 1 + a.long_frames // PER_LATENT, Sampling(guidance=a.guidance),
                                         batch=a.long, labels=lab, seed=99)), 1).numpy()
        long, _ = decode(c, toks, a.long_frames)
        live = (c.layers(c.ref_pixels(torch.from_numpy(toks[:, 0].astype(np.int64).clip(0, CODES - 1))))[1][:, :, 0] >= 0).sum(1)
        gs = BlockStats(a.long)
        for t in range(long.shape[1]):
            gs.push(long[:, t, ..., None])
        gi, gb, gm = gs.arrays()
        bad = collapsed(gi, gb, gm, rule)
        why = {int(j): {"blobs_min": float(gb[:, j].min()), "blobs_max": float(gb[:, j].max()),
                        "max_blobs_min": float(gm[:, j].min()), "intensity_min": float(gi[:, j].min()),
                        "intensity_max": float(gi[:, j].max())} for j in np.flatnonzero(bad)}
        res["long"] = {"clips": a.long, "frames": a.long_frames, "collapses": int(bad.sum()),
                       "collapsed": np.flatnonzero(bad).tolist(), "layers_per_clip": live.tolist(),
                       "why": why, "rule": rule,
                       "warp_ratio_last_64": float(np.mean([warping_error(x[-64:]) for x in long]) / res["real"]["warp"])}
        res["long"].update({k: v for k, v in identity_figures(long[:, -64:, ..., None], idr).items()
                            if k in ("switches_per_100", "confident_share", "tracked_steps", "switches")})
    if a.speed:  # batch 1, side by side with the shipped model: frames per second of a 64-frame clip
        from arvid import Arvid
        shipped = Arvid.from_pretrained()
        def timed(f):
            t0 = time.perf_counter(); f(); return time.perf_counter() - t0
        lab1 = torch.as_tensor(labels[:1])
        ours = lambda: decode(c, torch.stack(list(generate(g, 5, Sampling(), batch=1, labels=lab1, seed=5)), 1).numpy(), 64)
        theirs = lambda: shipped.generate(64, labels=[int(v) for v in labels[0]], seed=5)
        ours(); theirs()  # warm
        t_ours = min(timed(ours) for _ in range(2)); t_theirs = min(timed(theirs) for _ in range(2))
        res["speed"] = {"layered_frames_per_s": 64 / t_ours, "shipped_frames_per_s": 64 / t_theirs,
                        "ratio": t_theirs / t_ours, "threads": torch.get_num_threads()}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
