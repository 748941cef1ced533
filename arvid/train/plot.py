"""`arvid train plot RUN`: a run's curves, from its log.csv, without torch: a table on stdout and a picture.

The table shows about a dozen logged steps spread over the run (the last always) with the loss, the task's
figures, the held-out evaluation's and the learning rate. The picture (RUN/curves.png unless --out says
otherwise) draws each of them against the step. It works while the run trains: the log grows as it goes.
"""

from __future__ import annotations

from pathlib import Path

from arvid.errors import ArvidError
from arvid.train.preview import CURVES_FILE, check_own, draw_curves, curves_table, save_picture
from arvid.train.runlog import read_log

def plot(run: str, out: str | None = None, rows: int = 12, picture: bool = True) -> None:
    """Print the table of `run`'s log (about `rows` steps) and, with `picture`, draw its curves into `out`
    (default RUN/curves.png). Everything is checked before anything is printed or written."""
    if rows < 2:
        raise ArvidError(f"--rows must be at least 2, got {rows}")
    names, logged = read_log(run)
    if not logged:
        raise ArvidError(f"{run}: the log has no steps yet: look again after the first --log-every steps")
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    target = Path(out) if out else run_dir / CURVES_FILE
    if picture:
        if target.suffix.lower() != ".png":
            raise ArvidError(f"--out {target}: the curves are drawn as PNG; give a path ending in .png")
        check_own(target, "training curves")
    print(curves_table(names, logged, rows))
    if picture:
        save_picture(draw_curves(names, logged, f"{run_dir.name}: {len(logged)} logged steps"), target, "training curves")
        print(f"arvid: curves drawn in {target}")


__all__ = ["plot"]
