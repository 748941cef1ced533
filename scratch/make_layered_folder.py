"""Assemble a layered tokenizer folder from the shipped tokenizer and the trial's weights (one-off).

    python scratch/make_layered_folder.py OUT
"""
import sys
import torch
from safetensors.torch import load_file
from arvid.tokenizer import Tokenizer, LayeredConfig, LayeredTokenizer

ref = Tokenizer.from_pretrained("arvid/weights/default/tokenizer")
ref.load_state_dict(load_file("scratch/checkpoints/reference-decoder.safetensors"), strict=False)
cfg = LayeredConfig(reference={**ref.config.to_dict(), "notes": {}},
                    notes={"dataset": "moving-mnist", "frames": 32, "size": 64,
                           "reference": "arvid/weights/default/tokenizer, its decoder tuned on single frames",
                           "layer_net": "scratch/layerseg.py"})
tok = LayeredTokenizer(cfg)
tok.reference.load_state_dict(ref.state_dict())
tok.layer_net.load_state_dict(load_file("scratch/checkpoints/layer-seg.safetensors"))
tok.save_pretrained(sys.argv[1])
print(cfg.codebook_size, cfg.frames_per_latent, cfg.latent)
