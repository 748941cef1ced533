"""A run's metrics on disk: `log.csv` in the run folder, always, and TensorBoard event files in `tensorboard/`
when the `tensorboard` package is installed. Torch-free, so `arvid train plot` reads the log without torch.

log.csv has one row per logged step: `step`, `elapsed_s` (training time so far, across resumes), `left_s` (the
estimate of the time still to go), then the loss, the task's figures and the held-out evaluation's. It is the
trainer's metric history, which every checkpoint keeps: a resumed run rewrites it from its checkpoint (rows
logged after that checkpoint by a killed run go, as the steps themselves do) and then appends. A header line
starting `step,elapsed_s,` marks the file as arvid's: a `log.csv` that is not is never written over.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from arvid.errors import ArvidError
from arvid.utils.atomic import atomic_write_text

LOG_FILE = "log.csv"
TENSORBOARD_DIR = "tensorboard"
FIRST_COLUMNS = ("step", "elapsed_s", "left_s")
_MARK = ",".join(FIRST_COLUMNS[:2]) + ","
_MAX_BYTES = 256 << 20


def is_run_log(path: Path) -> bool:
    """Whether `path` is a log.csv arvid wrote (its header starts with `step,elapsed_s,`)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_MARK)).decode("ascii", "replace") == _MARK
    except OSError:
        return False


def columns(rows: list[dict]) -> list[str]:
    """The CSV's columns for `rows`: step, elapsed_s, left_s, then every other key in the order first seen."""
    seen = dict.fromkeys(FIRST_COLUMNS)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _line(row: dict, names: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(k)) for k in names])
    return buf.getvalue()


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class RunLog:
    """Writes a run's rows to log.csv (and TensorBoard when installed); main process only."""

    def __init__(self, out: Path, history: list[dict], start_step: int) -> None:
        self.path = Path(out) / LOG_FILE
        self.names = columns(history)
        self._rewrite(history)
        self.tb = None
        try:  # optional: TensorBoard's writer needs the tensorboard package
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.tb = SummaryWriter(str(Path(out) / TENSORBOARD_DIR), purge_step=start_step or None)

    def _rewrite(self, rows: list[dict]) -> None:
        atomic_write_text(self.path, "".join([",".join(self.names) + "\n", *(_line(r, self.names) for r in rows)]))

    def append(self, row: dict, history: list[dict]) -> None:
        """Add `row` (already the last of `history`); a row with a new column rewrites the file with it."""
        if any(k not in self.names for k in row):
            self.names = columns(history)
            self._rewrite(history)
        else:
            with open(self.path, "a") as f:
                f.write(_line(row, self.names))
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_log(run: str | os.PathLike) -> tuple[list[str], list[dict[str, float | None]]]:
    """The columns and rows of RUN/log.csv (or of a CSV file given itself); ArvidError when it is not arvid's."""
    path = Path(run)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        raise ArvidError(f"{path} does not exist: give a run folder of `arvid train` (it writes log.csv as it trains)")
    if path.stat().st_size > _MAX_BYTES or not is_run_log(path):
        raise ArvidError(f"{path} is not a training log written by arvid (its first line starts 'step,elapsed_s,')")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        names = next(reader)
        rows = []
        for cells in reader:
            row = {}
            for k, c in zip(names, cells):
                try:
                    row[k] = float(c) if c else None
                except ValueError:
                    row[k] = None
            if row.get("step") is not None:
                rows.append(row)
    return names, rows


__all__ = ["FIRST_COLUMNS", "LOG_FILE", "RunLog", "TENSORBOARD_DIR", "is_run_log", "read_log"]
