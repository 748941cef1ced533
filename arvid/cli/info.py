"""`arvid info`: versions, device, and which attention path will run."""

from __future__ import annotations

import argparse
import json


COMMANDS = {"info": "show versions, the device, and which attention path (Triton, interpreter, PyTorch) runs"}


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help=COMMANDS["info"],
        description="Show arvid's and its dependencies' versions, the device arvid will use, which "
        "attention implementation runs there (compiled Triton kernels on a GPU, the Triton interpreter "
        "when TRITON_INTERPRET=1, otherwise PyTorch's scaled_dot_product_attention), and the shipped "
        "default model's configuration (with its label reader's, when it has one).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    p.set_defaults(func=run)


def _table(info: dict) -> str:
    lines = [f"arvid {info['arvid']}  (python {info['python']}, {info['platform']})", "", "packages:"]
    for name, version in info["packages"].items():
        lines.append(f"  {name:<24} {version or 'not installed'}")
    dev = info["device"]
    lines += ["", "device:"]
    if dev["cuda_available"]:
        lines.append(f"  cuda: {dev['gpu_count']} x {dev['gpu_name']} ({dev['gpu_memory_gib']} GiB, "
                     f"sm {dev['compute_capability']}, bf16 {'yes' if dev['bf16_supported'] else 'no'})")
    else:
        lines.append(f"  cpu only ({dev['cpu_threads']} threads, native bf16 {'yes' if dev['cpu_bf16'] else 'no'}); "
                     f"no CUDA GPU found")
    att = info["attention"]
    lines += ["", f"attention: {att['backend']}", f"  {att.get('explanation') or att.get('reason', '')}"]
    model = info["default_model"]
    lines += ["", "default model:"]
    if not model["shipped"]:
        lines.append(f"  not shipped in this build ({model['path']} is missing)")
    else:
        lines.append(f"  {model['path']}")
        for part in ("tokenizer", "generator", "reader", "sampling"):
            if part in model:
                cfg = ", ".join(f"{k}={v}" for k, v in model[part].items())
                lines.append(f"  {part}: {cfg}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from arvid.info import collect_info

    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else _table(info))
    return 0
