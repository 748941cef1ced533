"""Process-group plumbing for DistributedDataParallel under `torchrun`.

`torchrun` (or any launcher) sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 `setup`
joins the process group (NCCL for CUDA devices, gloo on the CPU), each process taking
`cuda:LOCAL_RANK`. Without those variables everything here is a single-process no-op, so the
trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from arvid.errors import ArvidError
from arvid.utils.device import resolve_device


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    enabled: bool  # a process group is in use
    owns_group: bool  # we created it, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over all processes (a copy; the input is left alone)."""
        value = value.detach().float().clone()
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def max(self, values: list[float]) -> list[float]:
        """The element-wise maximum of `values` over all processes (every process must call it): what one process
        decided (a stop signal, a checkpoint due) every process then does at the same step."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def all_gather_bytes(self, blob: bytes) -> list[bytes]:
        """Every process's `blob`, in rank order (a collective: all processes must call it)."""
        if not self.enabled:
            return [blob]
        length = torch.tensor([len(blob)], dtype=torch.int64, device=self.device)
        lengths = [torch.zeros_like(length) for _ in range(self.world_size)]
        dist.all_gather(lengths, length)
        size = int(max(n.item() for n in lengths))
        data = torch.zeros(size, dtype=torch.uint8, device=self.device)
        data[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(self.device)
        parts = [torch.empty_like(data) for _ in range(self.world_size)]
        dist.all_gather(parts, data)
        return [bytes(p[: int(n.item())].cpu().numpy().tobytes()) for p, n in zip(parts, lengths)]

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """`model` in DistributedDataParallel when a process group is in use, else unchanged."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DistributedDataParallel (or `torch.compile`) wrapper."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ArvidError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def _device_for(name: str, local_rank: int, world_size: int) -> torch.device:
    if world_size == 1:
        return resolve_device(name)
    if name in ("auto", "cuda"):
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise ArvidError(
                    f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                    "start at most that many processes per node"
                )
            return torch.device("cuda", local_rank)
        if name == "cuda":
            raise ArvidError("device 'cuda' asked for, but this machine has no CUDA GPU: use --device cpu")
        return torch.device("cpu")
    device = resolve_device(name)
    if device.type != "cpu":
        raise ArvidError(
            f"device {name!r} under torchrun: use --device auto or cuda (each process takes cuda:LOCAL_RANK) or cpu"
        )
    return device


def setup(device_name: str = "auto") -> DistContext:
    """Join the process group when launched with WORLD_SIZE > 1; pick this process's device."""
    if dist.is_available() and dist.is_initialized():  # the caller runs the group
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        device = _device_for(device_name, local, world)
        return DistContext(rank, world, local, device, enabled=world > 1, owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _device_for(device_name, local, world)
    if world == 1:
        return DistContext(0, 1, 0, device, enabled=False, owns_group=False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    return DistContext(rank, world, local, device, enabled=True, owns_group=True)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
