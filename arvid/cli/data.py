"""`arvid data NAME`: write samples of a dataset as video files and a contact sheet.

So a user can look at what a model will learn from before training on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from arvid.cli._common import check_fps, check_seed

FORMATS = ("mp4", "webm", "gif", "npy", "png")
MAX_COUNT = 100_000  # clips one run writes
SHEET_CLIPS = 16  # the contact sheet shows the first clips: memory does not grow with --count


COMMANDS = {"data": "write samples of a dataset (moving-mnist, shapes, folder) as videos and a contact sheet"}


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help=COMMANDS["data"],
        description="Write COUNT sample clips of a dataset into OUT as video files, plus labels.json "
        f"(each clip's classes) and sheet.png (one row of frames for each of the first {SHEET_CLIPS} clips), "
        "so you can see what a "
        "model will learn from. Clips are deterministic for a given --seed and --split.",
    )
    p.add_argument("dataset", choices=("moving-mnist", "shapes", "folder"),
                   help="moving-mnist: real MNIST digits bouncing in 64x64 frames; shapes: coloured "
                   "bouncing shapes; folder: random clips from your own videos (needs --path; the files held out for evaluation are "
                   "said, and only --split eval reads them)")
    p.add_argument("--out", required=True, type=Path, help="folder to write into (created if missing)")
    p.add_argument("--frames", type=int, default=20, help="frames per clip (default 20)")
    p.add_argument("--count", type=int, default=8, help="number of clips (default 8)")
    p.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", choices=("train", "eval"), default="train",
                   help="train or held-out eval clips (Moving MNIST eval uses digits 4000-4999)")
    p.add_argument("--path", type=Path, help="the folder of videos, for the folder dataset")
    p.add_argument("--stride", type=int, default=1, help="frame stride when sampling a video folder")
    p.add_argument("--format", choices=FORMATS, default="mp4",
                   help="file format of the clips: mp4 (H.264), webm (VP9), gif, npy, or png (a folder of frames)")
    p.add_argument("--fps", type=float, default=None, help="frame rate to write (default: the dataset's)")
    p.set_defaults(func=run)


def _made_by_arvid_data(folder: Path) -> bool:
    """Whether `folder` holds only what an earlier `arvid data` wrote: its labels.json names its samples, and
    nothing else is there but those samples and sheet.png."""
    import re

    from arvid.errors import ArvidError
    from arvid.utils.jsonfile import read_json

    try:
        labels = read_json(folder / "labels.json")
    except ArvidError:  # missing, too large, not JSON: not a folder arvid data wrote
        return False
    sample = re.compile(r"sample_\d{3,}(\.(mp4|webm|gif|npy))?")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and sample.fullmatch(k) for k in labels):
        return False
    return all(p.name in labels or p.name in ("labels.json", "sheet.png") for p in folder.iterdir())


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from arvid.data import make_dataset
    from arvid.errors import ArvidError
    from arvid.utils import atomic_write_text
    from arvid.utils.atomic import atomic_path
    from arvid.utils.memory import check_count, check_fits
    from arvid.video import clips_sheet, write_video

    if args.count < 1:
        raise ArvidError(f"--count must be at least 1, got {args.count}")
    check_count(args.count, MAX_COUNT, "--count")
    clip_bytes = max(args.frames, 0) * max(args.size, 0) ** 2 * 3
    check_fits((min(args.count, SHEET_CLIPS) + 1) * clip_bytes,  # the clips the sheet shows, and the one being written
               f"clips of {args.frames:,} frames of {args.size}x{args.size}", "lower --frames or --size")
    check_fps(args.fps)
    check_seed(args.seed)
    if args.out.exists() and not args.out.is_dir():
        raise ArvidError(f"--out {args.out} exists and is not a folder")
    files = [f"sample_{i:03d}" + ("" if args.format == "png" else f".{args.format}") for i in range(args.count)]
    if args.out.is_dir() and any(args.out.iterdir()) and not _made_by_arvid_data(args.out):
        raise ArvidError(f"--out {args.out} is a folder arvid data did not write (it holds "
                         f"{', '.join(sorted(p.name for p in args.out.iterdir())[:3])}, ...): give a new or empty folder")
    if not args.out.parent.exists():
        raise ArvidError(f"cannot create {args.out}: its parent folder {args.out.parent} does not exist")
    ds = make_dataset(args.dataset, frames=args.frames, size=args.size, split=args.split, seed=args.seed,
                      path=args.path, stride=args.stride)
    fps = args.fps or ds.fps
    ds[0]  # a dataset that cannot make a clip (a folder of short videos) says so before the bar and the folder
    if hasattr(ds, "notice"):  # a folder of videos: which files are held out, which were skipped
        print(f"arvid: {ds.notice()}", file=sys.stderr)
    clips, titles, labels = [], [], {}
    try:  # into a temporary folder beside --out, renamed into place at the end: whole or nothing
        with atomic_path(args.out, is_dir=True) as tmp:
            for i in tqdm(range(args.count), desc=f"writing {args.dataset}", unit="clip"):
                clip = ds[i]
                name = files[i]
                write_video(tmp / name, clip.video, fps=fps)
                names = [ds.class_names[j] if ds.class_names else str(j) for j in clip.labels.tolist()]
                labels[name] = names
                if i < SHEET_CLIPS:
                    clips.append(clip.video)
                    titles.append(f"{name}  {' '.join(names)}")
            clips_sheet(clips, tmp / "sheet.png", titles=titles, max_frames=10)
            atomic_write_text(tmp / "labels.json", json.dumps(labels, indent=1) + "\n")
    except KeyboardInterrupt as stop:
        stop.args = (f"nothing was written ({args.out} is as it was)",)
        raise
    except OSError as e:  # a full disk
        raise ArvidError(f"cannot write {args.out}: {e.strerror or e} (nothing was written)") from None
    print(f"wrote {args.count} {args.dataset} clips ({args.frames} frames, {ds.height}x{ds.width}, "
          f"{args.format}) and a contact sheet to {args.out}/ (sheet.png, labels.json)")
    return 0
