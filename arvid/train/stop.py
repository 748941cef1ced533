"""Stopping a run without losing its work: Ctrl-C, SIGTERM and SIGHUP become a request the training loop honours
at the next clean point between optimizer steps, where it writes a checkpoint and then exits.

While `StopRequests` is active, the first stop signal only records itself (and says so on stderr); the loop asks
`requested` after each step. A second signal while a step runs stops at once without saving (`StopNow`), for a
step that takes too long; while the checkpoint is being written (`holding`), later signals wait for it, so a
checkpoint is never left half-written by an impatient second Ctrl-C. A signal the caller set to be ignored
(nohup) stays ignored, and outside the main thread (where Python cannot set handlers) nothing changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

# Ctrl-C, kill/timeout/Docker/Slurm, a dropped ssh session, Ctrl-\, job tools: the signals the CLI treats as a stop
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1")
                     if hasattr(signal, name))


class StopNow(KeyboardInterrupt):
    """A second stop signal while a step ran: the run stops at once, without a checkpoint of that step."""

    def __init__(self, signum: int):
        super().__init__()
        self.exit_code = 128 + signum


class StopRequests:
    """A context in which stop signals ask the loop to stop at its next clean point (see the module docstring)."""

    def __init__(self, note: str = "arvid: stopping: the checkpoint is written after this step (signal again to "
                                   "stop at once, without it)") -> None:
        self.signum = 0  # the first stop signal received, 0: none
        self.note = note
        self._holding = False
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum != 0

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 130

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def request(self, signum: int) -> None:
        """Record a stop as a signal would (also for a stop another process received, under torchrun)."""
        if not self.signum:
            self.signum = int(signum)

    @contextlib.contextmanager
    def holding(self):
        """Signals received inside wait until it ends (a checkpoint being written is finished first)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _handle(self, signum, frame) -> None:
        if self.signum and not self._holding:
            raise StopNow(signum)
        if not self.signum:
            self.signum = signum
            with contextlib.suppress(OSError):  # a plain write: safe inside a handler, whatever the bar is doing
                os.write(2, f"\n{self.note}\n".encode())


__all__ = ["STOP_SIGNALS", "StopNow", "StopRequests"]
