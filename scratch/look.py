import sys; sys.path.insert(0, "scratch")
import torch, numpy as np
from reftok_tools import load, encode, decode
from reftok import batch
from arvid.data.moving_mnist import MovingMNIST
from arvid.tokenizer import tensor_to_video
from arvid.video.sheet import clips_sheet
torch.set_num_threads(1)
m = load(sys.argv[1], sys.argv[2])
x = batch(MovingMNIST(frames=17, split="eval", seed=1), 0, 2)
rec = tensor_to_video(decode(m, encode(m, x)))
real = tensor_to_video(x)
clips_sheet([real[0], rec[0], real[1], rec[1]], sys.argv[3], titles=["real", "recon", "real", "recon"])
