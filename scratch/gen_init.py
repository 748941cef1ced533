"""A generator folder with the shipped generator's weights on a 4x4 grid, 4 sink frames (the reference tiles)."""
import sys, torch
from arvid.generator import Generator
from arvid.generator.config import GeneratorConfig
g = Generator.from_pretrained("arvid/weights/default/generator")
cfg = GeneratorConfig.from_dict({**g.config.to_dict(), "latent_h": 4, "latent_w": 4, "sink_frames": 4,
                                 "window_frames": int(sys.argv[2])})
n = Generator(cfg)
n.load_state_dict(g.state_dict())
n.save_pretrained(sys.argv[1])
print(cfg)
