"""Small shared helpers: atomic file writes and device selection.

`resolve_device` loads on first use (it needs torch): the torch-free parts of arvid (the CLI's help, training
logs and pictures) import the atomic writers without it.
"""

from arvid.utils.atomic import atomic_path, atomic_write_bytes, atomic_write_text, check_target

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "check_target", "resolve_device"]


def __getattr__(name: str):
    if name == "resolve_device":
        from arvid.utils.device import resolve_device

        globals()[name] = resolve_device
        return resolve_device
    raise AttributeError(f"module 'arvid.utils' has no attribute {name!r}")
