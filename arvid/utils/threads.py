"""How many CPU threads torch uses, chosen for the work at hand.

Torch's default is one thread per core. That is the wrong choice for arvid's small steps on a shared machine:
when another process holds one of two cores, every parallel region waits for the thread that was descheduled,
and a raster model generated at 0.3-2.3 frames/s with two threads against 8-10 with one. The choice, made when
work starts (`choose`):

    the thread count asked for (`--threads N`, or `threads=` in the API), else
    OMP_NUM_THREADS when the environment sets it, else
    1 for work made of tiny steps (a raster model's one-token decode step: it has nothing to split), else
    the cores not busy right now: the cores this process may run on, less the other processes running
    (/proc/stat's procs_running, the median of three looks 5 ms apart), at least 1.

`using(n)` sets the count for a block and puts the previous one back, so a library call leaves the caller's
setting as it was.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import torch

from arvid.errors import ArvidError

SMALL_STEPS = "small steps"  # work whose steps are too small to split between threads
PARALLEL = "parallel"  # work with enough arithmetic per step to share between cores


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_elsewhere(samples: int = 3, pause: float = 0.005) -> int:
    """Processes running on the machine now besides this one (0 where it cannot be read)."""
    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
        except (OSError, StopIteration, ValueError, IndexError):
            return 0
        seen.append(max(0, running - 1))  # this process is one of them
        if i + 1 < samples:
            time.sleep(pause)
    return sorted(seen)[len(seen) // 2]


def choose(work: str, requested: int | None = None) -> int:
    """The thread count for `work` (SMALL_STEPS or PARALLEL); see the module docstring."""
    if requested is not None:
        check(requested)
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if work == SMALL_STEPS:
        return 1
    return max(1, cores() - busy_elsewhere())


def check(threads, name: str = "--threads") -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise ArvidError(f"{name} must be a whole number of threads from 1 to 1024, got {threads!r}")


@contextlib.contextmanager
def using(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


__all__ = ["PARALLEL", "SMALL_STEPS", "busy_elsewhere", "check", "choose", "cores", "using"]
