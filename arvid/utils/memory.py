"""What a request will allocate, checked before the work starts: one place, named limits.

    check_fits(nbytes, "a batch of 64 clips", "lower --batch")   # ArvidError when it cannot fit

The machine's limit is the memory available now (/proc/meminfo's MemAvailable) less a margin; where that cannot
be read, only the documented limits hold. Estimates are upper bounds of the large buffers (KV caches, frames,
activations of a latent frame), not of every temporary.
"""

from __future__ import annotations

from arvid.errors import ArvidError

MAX_FRAMES = 10_000_000  # frames one command generates: over a day of video at 100 frames/s
MAX_BATCH = 4096  # clips generated at once
HEADROOM = 0.8  # of the available memory a request may plan to use


def available_bytes() -> int | None:
    """Memory available to new allocations now, or None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """ArvidError naming `what` and `fix` when `nbytes` would not fit in the memory available now."""
    free = available_bytes()
    if free is not None and nbytes > HEADROOM * free:
        raise ArvidError(f"{what} needs about {_size(nbytes)} of memory and this machine has {_size(free)} available: "
                         f"{fix}")


def check_count(value: int, limit: int, flag: str) -> None:
    if value > limit:
        raise ArvidError(f"{flag} {value:,} is over arvid's limit of {limit:,}: ask for less")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


__all__ = ["HEADROOM", "MAX_BATCH", "MAX_FRAMES", "available_bytes", "check_count", "check_fits"]
