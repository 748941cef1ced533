"""Fingerprints of what the shipped model makes: the same command and seed give the same bytes, release after release.

Each case runs a CLI command in-process on the default model and hashes its output array (uint8 frames, or the
codes of a code file). The hashes were recorded on the code before the inference core was restructured; a
refactor must leave them unchanged. A deliberate change of outputs (new weights, a new sampler) updates them in
the same commit, saying why. The same hashes came out with 1 and 2 torch threads.
"""

import hashlib

from pathlib import Path

import numpy as np
import pytest

import arvid

from arvid.cli.main import main
from arvid.data import make_dataset
from arvid.kernels import use_backend

TOKENIZER = Path(arvid.__file__).parent / "weights" / "default" / "tokenizer"
FINGERPRINTS = {  # the layered default model (reference picture and positions), its label reader and sampling.json
    "generate": "f7994ed2ae678f0a",
    "generate_settings_0": "5168463354d958e8",
    "generate_settings_1": "a42e26efd5a81c12",
    "generate_uncond": "f2fdee57ed520ac5",
    "extend": "96856da4c35a0dbb",
    "tokenize": "579bfe2e01104d92",
}


def fingerprint(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fingerprints")
    np.save(d / "in.npy", make_dataset("moving-mnist", frames=6, size=64, split="eval", seed=0)[0].video)
    runs = [
        ["generate", "--frames", "9", "--label", "3,7", "--seed", "0", "--out", d / "generate.npy"],
        ["generate", "--frames", "6", "--label", "1,2", "--seed", "5", "--temperature", "0.8", "--top-k", "50",
         "--top-p", "0.9", "--min-p", "0.05", "--guidance", "2", "--batch", "2", "--out", d / "generate_settings.npy"],
        ["generate", "--frames", "5", "--seed", "3", "--out", d / "generate_uncond.npy"],
        ["extend", d / "in.npy", "--frames", "4", "--seed", "1", "--label", "4,5", "--out", d / "extend.npy"],
        ["tokenize", d / "in.npy", "--model", TOKENIZER, "--fit", "trim", "--out",
         d / "tokenize.npz"],
    ]
    with use_backend("pytorch"):
        for argv in runs:
            assert main([str(a) for a in argv]) == 0, argv
    return d


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_outputs_keep_their_fingerprint(outputs, name):
    if name == "tokenize":
        got = np.load(outputs / "tokenize.npz")["codes"]
    else:
        got = np.load(outputs / f"{name}.npy")
    assert fingerprint(got) == FINGERPRINTS[name], f"{name}: the same command and seed now give other output"
