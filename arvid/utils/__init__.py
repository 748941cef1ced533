"""Small shared helpers: atomic file writes and device selection."""

from arvid.utils.atomic import atomic_path, atomic_write_bytes, atomic_write_text, check_target
from arvid.utils.device import resolve_device

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_target", "resolve_device"]
