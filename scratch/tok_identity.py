"""Identity of a prototype tokenizer's reconstructions against the real clips and the shipped tokenizer's."""
import sys, json; sys.path.insert(0, "scratch")
import numpy as np, torch
from reftok_tools import load, encode, decode
from reftok import batch
from arvid.data.moving_mnist import MovingMNIST
from arvid.tokenizer import Tokenizer, tensor_to_video
from arvid.eval.identity import identity_figures, identity_reader
from arvid.eval.generation import warping_error
from arvid.eval.tokenizer import psnr
torch.set_num_threads(1)
n = int(sys.argv[3]) if len(sys.argv) > 3 else 16
x = torch.cat([batch(MovingMNIST(frames=33, split="eval", seed=1), i, 8) for i in range(n // 8)])
real = tensor_to_video(x)
reader = identity_reader()
out = {"real": identity_figures(real, reader)}
base = Tokenizer.from_pretrained("arvid/weights/default/tokenizer")
with torch.no_grad():
    plain = tensor_to_video(base.decode(base.encode(x)))
out["shipped"] = identity_figures(plain, reader)
if sys.argv[1] != "-":
    m = load(sys.argv[1], sys.argv[2])
    rec = tensor_to_video(torch.cat([decode(m, encode(m, x[i:i + 8])) for i in range(0, n, 8)]))
    out["reference"] = identity_figures(rec, reader)
    out["reference"]["psnr"] = float(np.mean([psnr(a, b) for a, b in zip(rec, real)]))
    out["reference"]["warp_ratio"] = float(np.mean([warping_error(c) for c in rec]) / np.mean([warping_error(c) for c in real]))
out["shipped"]["psnr"] = float(np.mean([psnr(a, b) for a, b in zip(plain, real)]))
out["shipped"]["warp_ratio"] = float(np.mean([warping_error(c) for c in plain]) / np.mean([warping_error(c) for c in real]))
print(json.dumps({k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()} for k, v in out.items()}, indent=1))
