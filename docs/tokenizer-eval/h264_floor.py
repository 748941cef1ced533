"""H.264 near its lowest rate: what it scores at the bits of a τ=4 tokenizer with each FSQ codebook.

`arvid eval tokenizer` gives H.264, clip by clip, the highest CRF whose stream has at least the
tokenizer's bits. This prints that figure for the bits a 17-frame 64x64 clip costs at 5 latent frames
of 8x8 tokens, for several FSQ codebooks, without training any of them: it shows where H.264's rate
floor (CRF 51) starts to bind. Run from the repository root:

    python docs/tokenizer-eval/h264_floor.py
"""

import math

import numpy as np

from arvid.data import make_dataset
from arvid.eval.tokenizer import h264_at_bits, psnr

CODEBOOKS = ([8, 8, 6, 5, 5], [8, 6, 6, 5, 5], [7, 6, 6, 5, 5], [6, 6, 6, 5, 5], [8, 5, 5, 5, 5], [5, 5, 5, 5, 5])
CLIPS, FRAMES, SIZE, TOKENS = 200, 17, 64, 5 * 8 * 8


def main() -> None:
    ds = make_dataset("moving-mnist", frames=FRAMES, size=SIZE, split="eval", seed=0)
    videos = np.concatenate([ds.batch(range(i, min(CLIPS, i + 8)))[0] for i in range(0, CLIPS, 8)])
    pixels = FRAMES * SIZE * SIZE
    print("| FSQ levels | codes | tokenizer bpp | H.264 PSNR dB | H.264 bpp | mean CRF | clips at CRF 51 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for levels in CODEBOOKS:
        codes = math.prod(levels)
        bits = TOKENS * math.log2(codes)
        runs = [h264_at_bits(v, bits) for v in videos]  # (crf, bytes, decoded) per clip
        db = np.mean([psnr(v, dec) for v, (_, _, dec) in zip(videos, runs)])
        h_bpp = np.mean([8 * n for _, n, _ in runs]) / pixels
        crfs = [c for c, _, _ in runs]
        print(f"| {','.join(map(str, levels))} | {codes} | {bits / pixels:.4f} | {db:.2f} | {h_bpp:.4f} | "
              f"{np.mean(crfs):.2f} | {sum(c == 51 for c in crfs)} / {CLIPS} |")


if __name__ == "__main__":
    main()
