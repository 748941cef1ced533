"""Compare the LayerNets of layered tokenizer folders on the same held-out composites (`arvid train layers`'s
evaluation: held-out digits, two per frame, coded and decoded by the first folder's reference coder).

    OMP_NUM_THREADS=1 python scratch/layers_compare.py arvid/weights/default/tokenizer runs/layers [--frames 512 --seed 12345]
"""
import argparse

import torch

from arvid.tokenizer import load_tokenizer
from arvid.train.layers import held_out, ink_figures

ap = argparse.ArgumentParser()
ap.add_argument("folders", nargs="+")
ap.add_argument("--frames", type=int, default=512)
ap.add_argument("--seed", type=int, default=12345, help="of the held-out composites (the evaluation's: 12345)")
a = ap.parse_args()
torch.set_num_threads(1)
toks = [load_tokenizer(f) for f in a.folders]
x, owner, touching = held_out(toks[0], a.frames, a.seed)
print(f"{a.frames} held-out composites, {int(touching.sum())} with their decoded ink in one piece")
for folder, tok in zip(a.folders, toks):
    right, ink = ink_figures(tok.layer_net, x, owner)
    print(f"{folder}: ink {right.sum() / ink.sum():.4f}, touching {right[touching].sum() / ink[touching].sum():.4f}")
