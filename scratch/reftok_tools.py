"""Prototype glue: tokenize clips with a RefTok checkpoint into an arvid token dataset (reference tiles first),
and decode generated codes back to video. Layout: a clip's codes are (4 + t - 1, 4, 4): the reference frame's
8x8 codes as four 4x4 tiles (TL, TR, BL, BR), then one 4x4 frame per later latent frame."""
import argparse, os, sys, time, json
import numpy as np, torch
from einops import rearrange
sys.path.insert(0, "scratch")
from reftok import RefTok, batch
from arvid.data.moving_mnist import MovingMNIST
from arvid.train.tokens import write_token_dataset


def tiles(codes8):  # (B, 8, 8) -> (B, 4, 4, 4)
    return rearrange(codes8, "b (i h) (j w) -> b (i j) h w", i=2, j=2)


def untile(t4):  # (B, 4, 4, 4) -> (B, 8, 8)
    return rearrange(t4, "b (i j) h w -> b (i h) (j w)", i=2, j=2)


def load(path, variant):
    ck = torch.load(path)
    m = RefTok(variant)
    m.variant = variant
    m.load_state_dict(ck["model"])
    return m.eval()


@torch.no_grad()
def encode(m, x):
    """x (B, 1, T, 64, 64) -> codes (B, 4 + (T-1)/2, 4, 4)."""
    c0 = m.base.encode(x[:, :, :1])  # (B, 1, 8, 8)
    ref = m.base.decode(c0)[:, :, 0]
    feats = m.ref_features(ref)
    if m.variant in ("mvp", "mvl"):
        codes = m.forward_loop(x, ref, feats)[1]
        return torch.cat([tiles(c0[:, 0]), codes], 1)
    bm = None
    if m.variant == "mv":
        from blockmatch import block_match
        bm = block_match(ref, x[:, 0, 1:])
    z = m.encode(x[:, :, 1:], feats, bm=bm)
    codes = m.quantizer(z, update=False)[1]  # (B, t, 4, 4)
    return torch.cat([tiles(c0[:, 0]), codes], 1)


@torch.no_grad()
def decode(m, codes):
    """codes (B, 4 + t, 4, 4) -> video (B, 1, 1 + 2t, 64, 64) in [-1, 1]."""
    c0 = untile(codes[:, :4])[:, None]
    ref = m.base.decode(c0)[:, :, 0]
    feats = m.ref_features(ref)
    zq = m.quantizer.codes_to_latent(codes[:, 4:])
    if m.variant in ("mvp", "mvl"):
        from arvid.tokenizer.causal_conv import StreamState
        ds, outs = StreamState(), []
        m.prev_flow = zq.new_zeros(zq.shape[0], 2, 1, 16, 16)
        m.prev_v = zq.new_zeros(zq.shape[0], getattr(m, "K", 1), 2)
        for j in range(zq.shape[2]):
            o = m.decode(zq[:, :, j:j + 1], ref, feats, ds)
            outs.append(m.last_warped if os.environ.get("WARP_ONLY") else o)
            if m.variant == "mvl":
                m.prev_v = m.vel[..., -1]
            else:
                m.prev_flow = m.last_flow[:, :, -1:]
        return torch.cat([ref[:, :, None], torch.cat(outs, 2).clamp(-1, 1)], 2)
    rest = m.decode(zq, ref, feats).clamp(-1, 1)
    return torch.cat([ref[:, :, None], rest], 2)


def build(args):
    m = load(args.ckpt, args.variant)
    for split, n, seed in (("train", args.clips, 0), ("eval", args.eval_clips, 0)):
        ds = MovingMNIST(frames=args.frames, split=split, seed=seed)
        toks, labs = [], []
        t0 = time.time()
        for i in range(0, n, 16):
            idx = range(i, min(i + 16, n))
            v, l = ds.batch(idx)
            x = rearrange(torch.from_numpy(v).float().div(127.5).sub(1), "b t h w c -> b c t h w")
            toks.append(encode(m, x).numpy()); labs.append(l)
            if i % 800 == 0:
                print(split, i, f"{time.time() - t0:.0f}s", flush=True)
        write_token_dataset(f"{args.out}-{split}", np.concatenate(toks), np.concatenate(labs), 240, 10,
                            source={"prototype": args.ckpt, "frames": args.frames})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt"); ap.add_argument("--variant", default="xattn"); ap.add_argument("--out")
    ap.add_argument("--clips", type=int, default=4000); ap.add_argument("--eval-clips", type=int, default=256)
    ap.add_argument("--frames", type=int, default=33); ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    build(a)
