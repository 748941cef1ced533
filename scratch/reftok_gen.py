"""Prototype: generate with a generator trained on RefTok tokens; measure warping error, labels, identity."""
import argparse, sys, json, time
import numpy as np, torch
from einops import rearrange
sys.path.insert(0, "scratch")
from reftok_tools import load, decode, encode
from arvid.generator import Generator
from arvid.generator.sampler import generate
from arvid.generator.sampling import Sampling
from arvid.eval.generation import warping_error, motion, _real
from arvid.eval.digits import train_reader, label_hits
from arvid.tokenizer import tensor_to_video


def gen_clips(g, tok, n_latent, labels, s, seed, bs=16, context=None):
    out = []
    for i in range(0, len(labels), bs):
        lab = torch.as_tensor(labels[i:i + bs])
        ctx = None if context is None else context[i:i + bs]
        frames = list(generate(g, n_latent, s, batch=len(lab), labels=lab, seed=seed + i, context=ctx))
        codes = torch.stack(frames, 1)
        if ctx is not None:
            codes = torch.cat([ctx, codes], 1)
        out.append(tensor_to_video(decode(tok, codes)))
    return np.concatenate(out)  # (N, T, H, W, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen"); ap.add_argument("--ckpt"); ap.add_argument("--variant", default="xattn")
    ap.add_argument("--clips", type=int, default=32); ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--temperature", type=float, default=1.0); ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--sheet", default=None); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--continuation", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok, g = load(a.ckpt, a.variant), Generator.from_pretrained(a.gen)
    real, labels = _real(64, a.frames, a.clips, 1)
    s = Sampling(temperature=a.temperature, guidance=a.guidance)
    t0 = time.time()
    n_latent = 4 + (a.frames - 1) // 2
    gen = gen_clips(g, tok, n_latent, labels, s, 0)
    el = time.time() - t0
    recon = tensor_to_video(decode(tok, encode(tok, rearrange(torch.from_numpy(real).float().div(127.5).sub(1), "b t h w c -> b c t h w"))))
    reader = train_reader(size=64, steps=1200, seed=0)
    res = {"gen_seconds": el, "frames_per_s": a.clips * a.frames / el}
    for name, c in (("real", real), ("recon", recon), ("generated", gen)):
        w = float(np.mean([warping_error(x) for x in c]))
        hits = label_hits(reader, c.reshape(-1, *c.shape[2:]), np.repeat(labels, c.shape[1], axis=0))
        r = {"warp": w, "motion": float(np.mean([motion(x) for x in c])), "labels": float(hits.mean())}
        try:
            from arvid.eval.identity import identity_figures
            r.update(identity_figures(c))
        except Exception as e:  # helper's module may not be there yet
            r["identity"] = repr(e)[:80]
        res[name] = r
    for name in ("recon", "generated"):
        res[name]["warp_ratio"] = res[name]["warp"] / res["real"]["warp"]
    print(json.dumps(res, indent=1))
    if a.sheet:
        from arvid.video.sheet import clips_sheet
        clips_sheet([real[0], recon[0], gen[0], gen[1], gen[2]], a.sheet, titles=["real", "recon", "gen", "gen", "gen"])


if __name__ == "__main__":
    main()
