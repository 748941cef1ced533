"""Trial: pick the reference picture with a label reader (as CLIP reranks DALL-E's samples), judged by another.

The default model draws 8 candidate references per clip (its shipped decoding: guidance 5, reference temperature
0.7). Each clip keeps one of its candidates drawn whole, chosen four ways: the first (what ships), the picker's
best, and for scale the judge's best. The picker is a digit reader of half the judge's width, trained on other
draws of the training split (seed 7); the judge is `arvid eval generation`'s reader (seed 0, full width). Both
learn from training digits only; the clips' labels come from held-out clips.

    python scratch/picker_trial.py [clips]
"""
import sys, json, time
import numpy as np, torch
from arvid import Arvid
from arvid.eval import digits
from arvid.eval.digits import DigitReader, label_hits, _frames_to_tensor
from arvid.generator import generate
from arvid.tokenizer.layered import render
from arvid.tokenizer.layers import well_drawn
from arvid.data.moving_mnist import MovingMNIST
from dataclasses import replace

torch.set_num_threads(1)
clips, N = int(sys.argv[1]) if len(sys.argv) > 1 else 64, 8
m = Arvid.from_pretrained()
s = m.sampling([0, 0])
drawn = replace(s, temperature=s.reference_temperature, reference_candidates=1)
ds = MovingMNIST(frames=16, split="eval", seed=1)
labels = torch.as_tensor(np.stack([ds[i].labels for i in range(clips)]))
t0 = time.time()
judge = digits.train_reader(size=64, steps=1200, seed=0)
orig = DigitReader.__init__
DigitReader.__init__ = lambda self, width=16: orig(self, width)  # the picker: half the width
picker = digits.train_reader(size=64, steps=1200, seed=7)
DigitReader.__init__ = orig
rows = labels.repeat_interleave(N, 0)
with torch.no_grad():
    cand = torch.cat([next(iter(generate(m.generator, 1, drawn, batch=len(rows[i:i + 128]), labels=rows[i:i + 128],
                                         seed=i))) for i in range(0, len(rows), 128)])
pics = m.tokenizer.reference_pixels(cand)
lay = m.tokenizer.layers_of(pics)
shown = render(lay, torch.where(lay.live[..., None], lay.box, torch.full_like(lay.box, 64))[:, None], 64, 64)[:, 0]
u8 = shown.round().clamp(0, 255).numpy().astype(np.uint8)
whole = np.array([well_drawn(p, 2, m.tokenizer.rule) for p in pics.round().numpy()]).reshape(clips, N)
judged = label_hits(judge, u8, rows.numpy()).reshape(clips, N).astype(float)
with torch.inference_mode():
    p = torch.sigmoid(picker(_frames_to_tensor(u8)))  # (clips N, 10)
score = p.gather(1, rows).min(1).values.numpy().reshape(clips, N)  # both labels on screen: the weaker one
ok = np.where(whole.any(1, keepdims=True), whole, True)
idx = np.arange(clips)
first = np.argmax(ok, 1)
picked = np.argmax(np.where(ok, score, -1), 1)
best = np.argmax(np.where(ok, judged, -1), 1)
print(json.dumps({"clips": clips, "candidates": N, "first_whole": judged[idx, first].mean(),
                  "picker_among_whole": judged[idx, picked].mean(), "judge_among_whole": judged[idx, best].mean(),
                  "picker_reads_itself": float((score[idx, picked] > 0.5).mean()),
                  "seconds": round(time.time() - t0)}), flush=True)
