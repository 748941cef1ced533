"""Screen decoding settings quickly: the warping error of generated clips against real ones, and long-clip collapses.

    python docs/generation-eval/sampling_screen.py '[{}, {"min_p": 0.1}, {"temperature": 0.7}]' --clips 32
    python docs/generation-eval/sampling_screen.py '[{"temperature": 0.7}]' --long --model runs/my-model

The clips, labels and collapse rule are those of `arvid eval generation` (its consistency clips: --frames 32 from
the eval split at seed 1; its long clips: 1,024 frames, labels and sampling seeds as there), with the generated
clips sampled in batches of 16 at seed = the batch's first clip. Each setting is a JSON object of decoding
settings (`arvid.Sampling`'s fields: temperature, top_k, top_p, min_p, guidance), completed from the model's
recommended decoding as `arvid generate` completes its flags. The full command measures more
(continuation, sweeps, label fidelity): use it for a setting worth shipping.
"""

import argparse
import json
import os
import time

import numpy as np
import torch

from arvid import Arvid
from arvid.eval import generation as E


def consistency(model, settings: list[dict], clips: int, frames: int) -> None:
    video, labels = E._real(64, frames, clips, 1)
    real_w = np.mean([E.warping_error(x) for x in video])
    real_sharp = np.mean([E.sharpness(x) for x in video])
    real_blobs = np.mean([E.blob_count(f) for c in video for f in c[::4]])
    print(f"real: warping {real_w:.5f}, digit blobs per frame {real_blobs:.2f}")
    for kw in settings:
        t0 = time.time()
        sampling = model.sampling(labels, **kw)
        out = np.concatenate([np.stack(list(E.rollout(model, frames, sampling, labels=labels[s:s + 16], seed=s,
                                                      batch=len(labels[s:s + 16]))), 1)
                              for s in range(0, clips, 16)])
        w = np.mean([E.warping_error(x) for x in out])
        print(f"{json.dumps(kw)}: warping {w:.5f} = {w / real_w:.2f}x real, sharpness "
              f"{np.mean([E.sharpness(x) for x in out]) / real_sharp:.2f}x, digit blobs per frame "
              f"{np.mean([E.blob_count(f) for c in out for f in c[::4]]):.2f} ({time.time() - t0:.0f} s)", flush=True)


def long_clips(model, settings: list[dict], clips: int) -> None:
    st = E.Settings(long_clips=clips)
    real, _ = E._real(64, 256, max(clips, 16), st.seed + 2)
    _, labels = E._real(64, 1, clips, st.seed + 3)
    rs = E.BlockStats(len(real))
    for t in range(real.shape[1]):
        rs.push(real[:, t])
    rule = E.collapse_rule(*rs.arrays()[:2])
    for kw in settings:
        t0, gs = time.time(), E.BlockStats(clips)
        sampling = model.sampling(labels, **kw)
        for frames in E.rollout(model, st.long_frames, sampling, labels=labels, seed=st.seed + 4, batch=clips):
            gs.push(frames)
        i, b, m = gs.arrays()
        bad = E.collapsed(i, b, m, rule)
        print(f"{json.dumps(kw)}: {int(bad.sum())} of {clips} long clips collapsed {np.flatnonzero(bad).tolist()}; "
              f"digit blobs per 64-frame block {np.round(b.mean(1), 2).tolist()} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", help="JSON list of decoding settings, e.g. '[{}, {\"min_p\": 0.1}]'")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--clips", type=int, default=32, help="consistency clips (default 32)")
    p.add_argument("--long-clips", type=int, default=16, help="long clips, with --long (default 16)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--long", action="store_true", help="count collapses in 1,024-frame clips instead")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    m = Arvid.from_pretrained(a.model, device="cpu")
    if a.long:
        long_clips(m, json.loads(a.settings), a.long_clips)
    else:
        consistency(m, json.loads(a.settings), a.clips, a.frames)
