"""A generator folder for the layered codec's tokens, warm-started from the shipped generator (trial).

The shipped generator's weights carry over whole; its vocabulary grows from the 240 codes to 240 + 65 position
codes (new embedding and output rows drawn like fresh ones), so frame 0, the reference, is generated as before.

    python scratch/layered_gen_init.py runs/lay-gen-init
"""
import sys, torch
sys.path.insert(0, "scratch")
from layered import VOCAB
from arvid.generator import Generator
from arvid.generator.config import GeneratorConfig

g = Generator.from_pretrained("arvid/weights/default/generator")
old = g.config.vocab_size
cfg = GeneratorConfig.from_dict({**g.config.to_dict(), "vocab_size": VOCAB})
n = Generator(cfg)
sd = g.state_dict()
new = n.state_dict()
for k, v in sd.items():
    if k == "tok_emb.weight":
        new[k][:old] = v[:old]
        new[k][VOCAB] = v[old]  # begin-of-clip
    elif k == "head.weight":
        new[k][:old] = v
    else:
        new[k].copy_(v)
n.load_state_dict(new)
n.save_pretrained(sys.argv[1])
print(cfg)
