"""The training loop shared by the tokenizer and the generator.

A task (`TrainTask`) says what to train: it builds the model, draws batch `step` for process
`rank`, and computes the loss. The engine does the rest, the same way for every task: AdamW with
linear warmup and cosine decay, gradient clipping, bf16 autocast on CUDA, a progress bar,
atomic checkpoints (see `arvid.train.checkpoint`), exact `resume`, a stop with the step number on
a NaN or Inf loss, and DistributedDataParallel when launched by `torchrun`.

Exact resume needs no data-loader state: batches are a pure function of (step, rank), and the
checkpoint holds the weights, the optimizer tensors and every process's RNG states after the
step, so a resumed run draws the same batches and random numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from arvid.errors import ArvidError
from arvid.files import CONFIG_FILE, load_state, read_envelope
from arvid.train.checkpoint import (OPTIMIZER_FILE, holds_checkpoint, latest_checkpoint, load_checkpoint, load_optimizer,
                                    save_checkpoint, sweep_temporaries)
from arvid.train.config import TrainConfig
from arvid.train.distributed import DistContext, setup, teardown
from arvid.train.preview import PREVIEW_FILE, check_own, write_preview
from arvid.train.rng import capture as capture_rng, restore as restore_rng, seed_all
from arvid.train.runlog import LOG_FILE, RunLog, is_run_log
from arvid.train.schedule import lr_factor
from arvid.train.stop import StopNow, StopRequests


@runtime_checkable
class TrainTask(Protocol):
    """What a model family plugs into `train`.

    Optional members, looked up with getattr: `command: str` (the KIND of `arvid train KIND` when it is not `kind`),
    `no_decay(name, p) -> bool` (default: 1-D parameters
    and biases get no weight decay), `throughput(batch) -> dict[str, float]` (per-process counts
    in one step, e.g. {"tokens": B * N}; the bar shows their rate summed over processes, e.g.
    tokens/s) and `find_unused_parameters: bool` (passed to DistributedDataParallel).

    Under torchrun `loss` receives the model wrapped in DistributedDataParallel: call the model
    (`model(x)`), since only its forward synchronises gradients; `arvid.train.unwrap(model)` gives
    the bare module for anything else.
    """

    kind: str  # "tokenizer" | "generator": written into config.json

    def build_model(self) -> torch.nn.Module: ...

    def model_config(self) -> dict: ...  # JSON-able, enough to rebuild the model

    def batch(self, step: int, rank: int, world_size: int, batch_size: int, device: torch.device) -> Any:
        """Batch `step` (0-based) of process `rank`: a pure function of its arguments."""
        ...

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...


def default_no_decay(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim < 2 or name.endswith(".bias")


def build_optimizer(model: torch.nn.Module, task, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with decay and no-decay groups; fused kernels where available, else foreach."""
    no_decay = getattr(task, "no_decay", None) or default_no_decay
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(p)
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": plain, "weight_decay": 0.0}) if g["params"]]
    if not groups:
        raise ArvidError(f"the {task.kind} model has no trainable parameters")
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)
    except (RuntimeError, ValueError):  # fused kernels need a supported device and dtype
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=True)


def train(task: TrainTask, cfg: TrainConfig) -> dict:
    """Train `task` as `cfg` says; return the final metrics (every process returns them)."""
    ctx = setup(cfg.device)
    try:
        return _Run(task, cfg, ctx).run()
    finally:
        teardown(ctx)


def check_out_dir(out: Path, resume: bool) -> None:
    """ArvidError if a run cannot start in `out` as asked: a file, an earlier run without --resume, or --resume in
    a folder of model files without checkpoints. Checked again by the run; the CLI asks before any data work."""
    if out.exists() and not out.is_dir():
        raise ArvidError(f"--out {out} is a file, not a folder")
    if not resume and out.is_dir() and holds_checkpoint(out):
        raise ArvidError(f"{out} already holds a training checkpoint: add --resume to continue it, "
                         "or give another --out")
    if resume and latest_checkpoint(out) is None and holds_checkpoint(out):
        raise ArvidError(f"{out} holds model files but no checkpoints/ folder: it is not a training run "
                         "that can be resumed (or its checkpoints were deleted); give another --out")
    log = out / LOG_FILE
    if os.path.lexists(log) and not is_run_log(log):
        raise ArvidError(f"{log} exists and arvid did not write it: a run writes its log there; move that file, "
                         "or give another --out")
    check_own(out / PREVIEW_FILE, "training preview")


class _Run:
    def __init__(self, task, cfg: TrainConfig, ctx: DistContext) -> None:
        self.task, self.cfg, self.ctx = task, cfg, ctx
        self.out = Path(cfg.out_dir)
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else ctx.device.type == "cuda"
        self.history: list[dict] = []
        self.model_config = _jsonable(task.model_config(), f"{task.kind} model_config()")
        self.command = getattr(task, "command", task.kind)  # `arvid train COMMAND`

    # -- setup

    def _prepare_out_dir(self) -> None:
        check_out_dir(self.out, self.cfg.resume)
        self.ctx.barrier()  # every process has looked before the first one writes
        if self.ctx.is_main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ArvidError(f"cannot create output folder {self.out}: {e}") from None
            sweep_temporaries(self.out)
        self.ctx.barrier()

    def _setup(self) -> int:
        """Build model and optimizer, restore a checkpoint if resuming; return the first step."""
        self._prepare_out_dir()
        seed_all(self.cfg.seed)
        self.model = self.task.build_model().to(self.ctx.device)
        self.optimizer = build_optimizer(self.model, self.task, self.cfg)
        folder = latest_checkpoint(self.out) if self.cfg.resume else None
        start = self._restore(folder) if folder is not None else 0
        if folder is None:
            if self.cfg.resume and self.ctx.is_main:
                tqdm.write(f"arvid: no checkpoint in {self.out}: starting at step 0")
            seed_all(self.cfg.seed + 7919 * (self.ctx.rank + 1))
        self.ddp = self.ctx.wrap(self.model, getattr(self.task, "find_unused_parameters", False))
        return start

    def _restore(self, folder: Path) -> int:
        # the config first: a run of another model is refused by name, before any weight is read
        saved = read_envelope(folder / CONFIG_FILE, self.task.kind)
        # a task may fill in what its config has gained since the checkpoint was written (new fields at their defaults)
        saved = getattr(self.task, "normalize_config", lambda d: d)(saved)
        if saved != self.model_config:
            diff = sorted(k for k in set(saved) | set(self.model_config) if saved.get(k) != self.model_config.get(k))
            raise ArvidError(f"{folder} was trained with another model config (differs in {', '.join(diff)}): "
                             "resume with the same model flags, or give another --out")
        c = load_checkpoint(folder, self.task.kind, layout=lambda config, source: self.model.state_dict())
        load_state(self.model, c.model)
        load_optimizer(self.optimizer, c.optimizer, c.state["optimizer"], folder / OPTIMIZER_FILE)
        self.history = list(c.state.get("history", []))
        states = c.state.get("rng", [])
        if len(states) == self.ctx.world_size:
            restore_rng(states[self.ctx.rank], self.ctx.device)
        else:
            if self.ctx.is_main:
                tqdm.write(f"arvid: {folder} was written by {len(states)} process(es), this run has "
                           f"{self.ctx.world_size}: random numbers are reseeded, so the run is not bit-exact")
            seed_all(self.cfg.seed + 7919 * (self.ctx.rank + 1) + c.state["step"])
        saved_cfg = c.state.get("train_config", {})
        changed = [k for k in ("steps", "batch_size", "lr", "seed", "warmup_steps", "min_lr_ratio", "weight_decay")
                   if k in saved_cfg and saved_cfg[k] != getattr(self.cfg, k)]
        if changed and self.ctx.is_main:
            tqdm.write(f"arvid: resuming with changed settings ({', '.join(changed)}): not an exact continuation")
        return int(c.state["step"])

    # -- the loop

    def run(self) -> dict:
        start = self._setup()
        cfg, ctx = self.cfg, self.ctx
        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {self.command}", unit="step", dynamic_ncols=True,
                   disable=not ctx.is_main, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        last: dict = dict(self.history[-1]) if self.history else {}
        self.figures = {k: v for k, v in last.items() if k.startswith("eval_")}  # the latest evaluation's
        self.log = RunLog(self.out, self.history, start) if ctx.is_main else None
        self.clock = _Clock(last.get("elapsed_s") or 0.0)
        self.saved_at = start if start else None
        counts: dict[str, float] = {}
        t0, done, last_save = time.perf_counter(), 0, time.monotonic()
        try:
            with StopRequests() as stop:
                for step in range(start, cfg.steps):
                    with self.clock.timing("step"):
                        loss, metrics, lr, extra = self._step(step)
                    n = step + 1  # steps done
                    evaluated = self._eval_due(n)
                    if evaluated:
                        with self.clock.timing("eval"):
                            self._evaluate(n)
                    for k, v in extra.items():
                        counts[k] = counts.get(k, 0.0) + v
                    done += 1
                    bar.update(1)
                    if n % cfg.log_every == 0 or n == cfg.steps or evaluated:
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        rates = {f"{k}/s": v * ctx.world_size / elapsed for k, v in counts.items()}
                        last = {"step": n, "elapsed_s": self.clock.elapsed(), "left_s": self._left(n), "loss": loss,
                                **metrics, **self.figures, "lr": lr, "steps/s": done / elapsed, **rates}
                        self.history.append(last)
                        if self.log is not None:
                            self.log.append(last, self.history)
                        bar.set_postfix({"left": _duration(last["left_s"]),
                                         **{k: _short(v) for k, v in last.items() if k not in _NOT_SHOWN}})
                    due = cfg.ckpt_minutes > 0 and time.monotonic() - last_save >= cfg.ckpt_minutes * 60
                    signum, due = (int(v) for v in ctx.max([stop.signum, float(due)]))  # all processes agree
                    stop.request(signum)
                    if n % cfg.ckpt_every == 0 or n == cfg.steps or due or stop.requested:
                        with stop.holding(), self.clock.timing("ckpt"):
                            self._save(n)
                        last_save = time.monotonic()
                    if stop.requested and n < cfg.steps:
                        raise self._stopped(n, stop.exit_code)
        except StopNow as e:
            raise self._stopped(None, e.exit_code) from None
        finally:
            bar.close()
            if self.log is not None:
                self.log.close()
        return last

    def _stopped(self, step: int | None, exit_code: int) -> KeyboardInterrupt:
        """The interruption the CLI reports in one line: where the work is saved and how to continue it."""
        resume = f"continue with `arvid train {self.command} --out {self.out} --resume`"
        if step is not None:
            said = f"step {step} saved in {latest_checkpoint(self.out)}; {resume}"
        elif self.saved_at is not None:
            said = (f"stopped at once, without saving the step in progress: the checkpoint of step {self.saved_at} "
                    f"in {self.out} is intact; {resume}")
        else:
            said = "stopped at once, before the first checkpoint: nothing was saved"
        stop = KeyboardInterrupt(said)
        stop.exit_code = exit_code
        return stop

    # -- evaluation, previews, the time left

    def _eval_due(self, n: int) -> bool:
        every = getattr(self.task, "eval_every", 0) or 0
        return every > 0 and callable(getattr(self.task, "eval_figures", None)) and (n % every == 0 or n == self.cfg.steps)

    def _evaluate(self, n: int) -> None:
        """The task's held-out figures (and, on the main process, preview.png) after `n` steps, in eval mode and
        without touching the training's random numbers, so a run evaluated more or less often trains the same."""
        model, device = self.model, self.ctx.device
        rng, was_training = capture_rng(device), model.training
        model.eval()
        try:
            with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.bf16):
                self.figures = {k: float(v) for k, v in self.task.eval_figures(model).items()}
                clips = getattr(self.task, "preview_clips", None)
                if self.ctx.is_main and clips is not None:
                    shown = clips(model)
                    if shown:
                        write_preview(self.out / PREVIEW_FILE, shown, f"step {n}")
        finally:
            model.train(was_training)
            restore_rng(rng, device)

    def _left(self, n: int) -> float | None:
        """Seconds still to go after `n` steps: the steps, evaluations and checkpoints left at their measured cost."""
        cfg = self.cfg
        if n >= cfg.steps:
            return 0.0
        every = getattr(self.task, "eval_every", 0) or 0

        def left(period: int) -> int:  # multiples of period in (n, steps], and the last step
            return cfg.steps // period - n // period + (cfg.steps % period != 0) if period else 0

        return self.clock.estimate({"step": cfg.steps - n, "eval": left(every) if self._eval_due(cfg.steps) else 0,
                                    "ckpt": left(cfg.ckpt_every)})

    def _step(self, step: int) -> tuple[float, dict[str, float], float, dict[str, float]]:
        cfg, ctx = self.cfg, self.ctx
        lr = cfg.lr * lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.task.batch(step, ctx.rank, ctx.world_size, cfg.batch_size, ctx.device)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, metrics = self.task.loss(self.ddp, batch)
        loss_value = ctx.mean(loss).item()  # every process sees the same value, so all stop together
        if not math.isfinite(loss_value):
            raise ArvidError(f"training loss is {loss_value} at step {step + 1}: stopped before the update, "
                             f"the last checkpoint in {self.out} is intact (lower --lr, or check the data)")
        loss.backward()
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            if not torch.isfinite(ctx.mean(norm)).item():
                raise ArvidError(f"gradient norm is not finite at step {step + 1}: stopped before the update, "
                                 f"the last checkpoint in {self.out} is intact (lower --lr, or try --no-bf16)")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        throughput = getattr(self.task, "throughput", None)
        extra = throughput(batch) if throughput else {}
        return loss_value, {k: float(v) for k, v in metrics.items()}, lr, extra

    def _save(self, step: int) -> None:
        blob = json.dumps(capture_rng(self.ctx.device)).encode()
        states = [json.loads(b) for b in self.ctx.all_gather_bytes(blob)]
        if self.ctx.is_main:
            train_config = {f.name: getattr(self.cfg, f.name) for f in fields(self.cfg)}
            state = {"world_size": self.ctx.world_size, "train_config": train_config,
                     "rng": states, "history": self.history}
            save_checkpoint(self.out, step, self.model, self.optimizer, self.task.kind,
                                 self.model_config, state)
        self.ctx.barrier()
        self.saved_at = step


def _jsonable(config: dict, what: str) -> dict:
    """The config as it reads back from JSON (tuples become lists), so comparisons are fair."""
    try:
        return json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-able: {e}") from None


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


_NOT_SHOWN = ("step", "steps/s", "elapsed_s", "left_s")  # kept in the log, not on the bar


def _duration(seconds: float | None) -> str:
    """12:34 or 1:02:03; '?' before anything was measured."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Clock:
    """Measured time of each kind of work (steps, evaluations, checkpoints) and the training time so far."""

    def __init__(self, elapsed_before: float) -> None:
        self.before, self.start = float(elapsed_before), time.perf_counter()
        self.total: dict[str, float] = {}
        self.count: dict[str, int] = {}

    @contextlib.contextmanager
    def timing(self, kind: str):
        t = time.perf_counter()
        yield
        self.total[kind] = self.total.get(kind, 0.0) + time.perf_counter() - t
        self.count[kind] = self.count.get(kind, 0) + 1

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def estimate(self, left: dict[str, int]) -> float | None:
        """Seconds for `left` (kind -> how many more); None until a step was measured. A kind not measured yet
        (the first evaluation) is counted as free until it has been."""
        if not self.count.get("step"):
            return None
        return sum(self.total[k] / self.count[k] * n for k, n in left.items() if self.count.get(k))


__all__ = ["TrainConfig", "TrainTask", "build_optimizer", "check_out_dir", "default_no_decay", "train"]
