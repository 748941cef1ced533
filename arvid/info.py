"""What arvid will run on: versions, the device, and which attention path is used.

`collect_info()` gathers it as a dict (for `arvid info --json`); the CLI prints it as a table.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch

from arvid.errors import ArvidError
from arvid.generator import GeneratorConfig, Sampling
from arvid.kernels import attention_backend
from arvid.pipeline import DEFAULT_MODEL_DIR
from arvid.reader import FOLDER as READER, ReaderConfig
from arvid.tokenizer import TokenizerConfig
from arvid.tokenizer.layered import LayeredConfig, is_layered
from arvid.files import read_envelope
from arvid.version import __version__

PACKAGES = ("torch", "triton", "numpy", "vector-quantize-pytorch", "av", "safetensors", "tqdm", "pillow")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict:
    info: dict = {"cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
                  "cpu_bf16": cpu_bf16_native()}
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            default="cuda",
            gpu_count=torch.cuda.device_count(),
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    else:
        info["default"] = "cpu"
    return info


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where `--bf16` speeds up CPU training
    (about 1.75x for the Moving MNIST tokenizer on a 2-core Zen 4); elsewhere oneDNN emulates it, slowly."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: treat its absence as "no"
        return False


def attention_info(device: str) -> dict:
    """Which attention path runs on `device`: the Triton kernels, their interpreter, or PyTorch."""
    backend = attention_backend(torch.device(device))
    why = {
        "triton": "compiled Triton kernels on the GPU",
        "triton-interpreter": "Triton kernels under the numpy interpreter (TRITON_INTERPRET=1): correct but slow",
        "pytorch": "PyTorch scaled_dot_product_attention with arvid's mask (no GPU for the Triton kernels)",
    }.get(backend, "")
    return {
        "backend": backend,
        "explanation": why,
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", ""),
        "ARVID_ATTENTION_BACKEND": os.environ.get("ARVID_ATTENTION_BACKEND", ""),
    }


def default_model_info() -> dict:
    """The shipped default model's configs (its label reader's and recommended decoding too, where it has them),
    when the package carries one."""
    if not DEFAULT_MODEL_DIR.is_dir():
        return {"shipped": False, "path": str(DEFAULT_MODEL_DIR)}
    out: dict = {"shipped": True, "path": str(DEFAULT_MODEL_DIR)}
    for part, config in (("tokenizer", TokenizerConfig), ("generator", GeneratorConfig), (READER, ReaderConfig)):
        cfg = DEFAULT_MODEL_DIR / part / "config.json"
        if cfg.is_file():
            try:
                raw = read_envelope(cfg, part)
                if part == "tokenizer" and is_layered(raw):
                    layered = LayeredConfig.from_dict(raw, source=str(cfg))
                    out[part] = {**{k: v for k, v in layered.to_dict().items() if k not in ("reference", "notes")},
                                 "frames_per_latent": layered.frames_per_latent,
                                 "codebook_size": layered.codebook_size,
                                 "reference": layered.reference_config.applicable()}
                    continue
                parsed = config.from_dict(raw, source=str(cfg))
                out[part] = parsed.applicable() if part == "tokenizer" else parsed.to_dict()
            except (OSError, ValueError, ArvidError) as e:
                out[part] = {"error": f"unreadable {cfg}: {e}"}
    sampling = DEFAULT_MODEL_DIR / "sampling.json"
    if sampling.is_file():
        try:
            out["sampling"] = Sampling.read_file(sampling)
        except ArvidError as e:
            out["sampling"] = {"error": str(e)}
    return out


def collect_info() -> dict:
    dev = device_info()
    return {
        "arvid": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": dev,
        "attention": attention_info(dev["default"]),
        "default_model": default_model_info(),
    }
