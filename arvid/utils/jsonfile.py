"""The one reader of arvid's JSON files (config.json, sampling.json, trainer_state.json, a token dataset's
meta.json): untrusted input, read within limits.

    data = read_json(path)          # ArvidError naming the file when it breaks a limit or is not JSON

Limits: at most `max_bytes` of UTF-8 text (64 MiB by default), nesting at most MAX_DEPTH deep, integers of at
most MAX_DIGITS digits (Python's own limit, 4,300, would raise its ValueError; no arvid number is that long),
and no NaN or Infinity (which Python's json accepts but JSON does not).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from arvid.errors import ArvidError

MAX_BYTES = 64 << 20
MAX_DEPTH = 32
MAX_DIGITS = 40


class _Refused(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a literal too large for a float, read as infinity
        raise _Refused(f"the number {text[:24]}, too large for a float")
    return value


def _constant(name: str):
    raise _Refused(f"{name} (JSON has no such number)")


def _depth(value, limit: int) -> int:
    """The nesting depth of a parsed value, stopping past `limit`."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, d + 1) for x in v]
    return deepest


def loads(text: str | bytes, source: str = "JSON"):
    """Parse JSON text within the limits; ArvidError naming `source` otherwise."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as e:
        raise ArvidError(f"{source} holds {e}: it is not a file arvid wrote, or it was edited") from None
    except UnicodeDecodeError as e:
        raise ArvidError(f"{source} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise ArvidError(f"{source} is not valid JSON ({e})") from None
    except RecursionError:
        value = None
    except ValueError as e:
        raise ArvidError(f"{source} cannot be read as JSON ({type(e).__name__}: {str(e)[:120]})") from None
    if value is None and text.strip() != "null" or _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ArvidError(f"{source} is not an arvid file: its JSON is nested too deeply (more than {MAX_DEPTH} "
                         "levels); copy or write it again")
    return value


def read_json(path: str | os.PathLike, max_bytes: int = MAX_BYTES):
    """Read and parse the JSON file at `path` within the limits."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ArvidError(f"{path} is not a file")
        if size > max_bytes:
            raise ArvidError(f"{path} is {size:,} bytes, over the {max_bytes:,} a file of its kind may have")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArvidError(f"{path} is missing") from None
    except OSError as e:
        raise ArvidError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    return loads(data, str(path))


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_DIGITS", "loads", "read_json"]
