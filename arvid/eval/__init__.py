"""Evaluation: what a model makes, measured on held-out clips. Above the pipeline: it generates through
`arvid.Arvid`'s public streaming API, as a user would.

Files: generation.py (`arvid eval generation`: continuation, warping error against real clips and a no-context
ablation, label fidelity, long-clip collapses, the report), tokenizer.py (`arvid eval tokenizer`: PSNR, SSIM,
bits per pixel and codebook use against H.264 at equal bits), digits.py (the digit reader that measures whether
asked-for labels show), identity.py (digits found, read one by one and tracked from frame to frame: identity
switches and the share of digits read confidently).
"""
