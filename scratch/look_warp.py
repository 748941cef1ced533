import sys; sys.path.insert(0, "scratch")
import torch, numpy as np, math
from reftok_tools import load
from reftok import batch
from arvid.data.moving_mnist import MovingMNIST
from arvid.tokenizer import tensor_to_video
from arvid.video.sheet import clips_sheet
torch.set_num_threads(1)
m = load(sys.argv[1], sys.argv[3] if len(sys.argv) > 3 else "mvp")
x = batch(MovingMNIST(frames=17, split="eval", seed=1), 0, 4)
with torch.no_grad():
    c0 = m.base.encode(x[:, :, :1]); ref = m.base.decode(c0)[:, :, 0]
    rec, _, _ = m(x, ref)
w = m.all_warped.clamp(-1, 1)
for name, y in (("blend", rec.clamp(-1, 1)), ("warp only", w)):
    print(name, 10 * math.log10(4 / ((y - x[:, :, 1:]) ** 2).mean().item()))
real, r, ww = tensor_to_video(x), tensor_to_video(rec), tensor_to_video(w)
clips_sheet([real[0][1:], r[0], ww[0], real[1][1:], r[1], ww[1]], sys.argv[2], titles=["real", "blend", "warp", "real", "blend", "warp"])
