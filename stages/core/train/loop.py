"""What every training stage shares: run folders, the learning-rate schedule,
full-state checkpoints and a resumable epoch/iteration loop.

Resume means the same run continues: model, optimizer, iteration and RNG
states are restored, and data order and augmentation depend only on (seed,
epoch, index), so an interrupted-then-resumed run on the CPU ends with the
same weights as an uninterrupted one.

A run folder is also readable while the run goes on: ``metrics.jsonl`` (numbers, for
``dgcn curves``), ``train.log`` (the same in lines for a person, with the precision, device
and environment the run started with, each validation and how the run ended; appended to by
``--resume``) and, with ``tensorboard``, TensorBoard event files in ``tb/``.
"""
from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch

from .. import provenance
from ..errors import CheckpointError, DgcnError, OutputExistsError
from ..io.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..io.files import write_json_atomic
from ..units import duration

TENSORBOARD_HINT = "pip install 'dgcn[tensorboard]'"


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up times a decay: ``kind`` "step", x``gamma`` every ``step_epochs`` epochs
    (docs/method.md §5, the published DGCN training), or "poly", Caffe's (1 - it/total)^``power``
    over the run's ``total_iters`` (DSRG's retraining)."""

    base_lr: float
    iters_per_epoch: int
    warmup_iters: int = 200
    step_epochs: float = 3.0
    gamma: float = 0.3
    kind: str = "step"
    power: float = 0.9
    total_iters: int = 0  # the run's iterations, which "poly" decays over

    def lr(self, iteration: int) -> float:
        warm = min(1.0, (iteration + 1) / self.warmup_iters) if self.warmup_iters > 0 else 1.0
        return self.base_lr * warm * self.decay(iteration)

    def decay(self, iteration: int) -> float:
        if self.kind == "poly":
            # Caffe counts the iteration from 0, so the first step has the base rate and the
            # last one (total - 1) a small positive rate; past the end it stays at 0
            return max(0.0, 1.0 - iteration / max(1, self.total_iters)) ** self.power
        steps = math.floor(iteration / max(1, self.iters_per_epoch) / self.step_epochs)
        return self.gamma**steps


def warmup_length(iters: int, fraction: float, total: int) -> int:
    """Warm-up iterations: ``fraction`` of the run's ``total`` iterations when above 0
    (a warm-up that scales with the data: the paper's 200 of about 4,600 iterations on
    VOC is 4 %), otherwise ``iters``."""
    return math.ceil(fraction * total) if fraction > 0 else int(iters)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": _numpy_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _numpy_state() -> dict[str, Any]:
    # plain lists and numbers, so weights_only loading accepts them
    _, key, pos, has_gauss, cached = np.random.get_state()
    return {"key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class WeightEma:
    """Exponential moving average of a model's weights, the model that is validated,
    kept in best.pt/final.pt and used downstream.

    With little data and no pretrained backbone, SGD moves the decision between
    look-alike classes back and forth from epoch to epoch; the average over the last
    few hundred steps does not swing with it. Floating-point state (weights and
    BatchNorm statistics) is averaged; integer buffers are copied. The average is
    bias-corrected: after t steps it is sum(decay^(t-s) w_s) / sum(decay^(t-s)), so
    the initial weights carry no weight and the horizon is about 1/(1-decay) steps
    from the start (a ramp such as min(decay, (1+t)/(10+t)) would keep the horizon
    far shorter than asked for in runs of a few hundred steps).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        t, d = self.updates, self.decay
        d = d * (1.0 - d ** (t - 1)) / (1.0 - d**t)
        live = model.state_dict()
        avgs, news = [], []
        for key, avg in self.model.state_dict().items():
            if avg.dtype.is_floating_point:
                avgs.append(avg)
                news.append(live[key].detach())
            else:
                avg.copy_(live[key])
        # one fused update per step, not one kernel per tensor (hundreds for a ResNet-101)
        torch._foreach_mul_(avgs, d)
        torch._foreach_add_(avgs, news, alpha=1.0 - d)


class RunFolder:
    """``config.json``, ``metrics.jsonl``, ``train.log``, ``last.pt``, ``best.pt`` and
    ``final.pt`` of one run (and ``tb/`` with TensorBoard, ``epoch_<k>.pt`` with ``keep_epochs``)."""

    def __init__(self, path: Path, *, resume: bool, overwrite: bool) -> None:
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.final = self.path / "final.pt"
        self.metrics = self.path / "metrics.jsonl"
        self.train_log = self.path / "train.log"
        self.tensorboard = self.path / "tb"
        if self.last.exists() and not (resume or overwrite):
            done = "finished" if self.final.exists() else f"stopped at iteration {_saved_iteration(self)}"
            raise OutputExistsError(f"{self.path} already holds a run ({done}); pass --resume to continue it or --overwrite to start again")
        if overwrite and not resume:
            for p in (self.last, self.best, self.final, self.metrics, self.train_log, *self.path.glob("epoch_*.pt")):
                p.unlink(missing_ok=True)
            if self.tensorboard.is_dir():  # the old run's curves would mix with the new one's
                shutil.rmtree(self.tensorboard)
        self.path.mkdir(parents=True, exist_ok=True)

    def epoch(self, k: int) -> Path:
        return self.path / f"epoch_{k}.pt"

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_json_atomic(self.path / "config.json", config, indent=2, default=str)

    def log(self, record: Mapping[str, Any]) -> None:
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    def say(self, line: str) -> None:
        """One line for a person in ``train.log``, with the local time; appended, so a resumed
        run continues the file."""
        with open(self.train_log, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def resume_state(self) -> Optional[dict[str, Any]]:
        return load_checkpoint(self.last) if self.last.exists() else None


def require_tensorboard() -> None:
    """Fail before a run starts, not after its first hours, when TensorBoard logging was
    asked for without the package (an optional extra: ``dgcn[tensorboard]``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise DgcnError(f"--tensorboard needs the tensorboard package: {TENSORBOARD_HINT}") from None


class TrainLog:
    """What the main process reports of a run as it trains: records in ``metrics.jsonl``, lines
    in ``train.log`` and, optionally, TensorBoard scalars (``train/<stat>``, ``val/<score>``)."""

    def __init__(self, folder: RunFolder, total: int, iters_per_epoch: int, epochs: int, *, tensorboard: bool = False,
                 start_iteration: int = 0) -> None:
        self.folder = folder
        self.total = total
        self.ipe = iters_per_epoch
        self.epochs = epochs
        self.writer = None
        if start_iteration == 0:
            # nothing to continue (a first start, or an attempt that died before its first
            # checkpoint): what such an attempt logged is not this run's
            folder.train_log.unlink(missing_ok=True)
            if folder.tensorboard.is_dir():
                shutil.rmtree(folder.tensorboard)
        if tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events a stopped attempt logged after the checkpoint this run
            # resumes from are dropped, as ``dgcn curves`` drops them
            self.writer = SummaryWriter(str(folder.tensorboard), purge_step=start_iteration or None)

    def start(self, kind: str, iteration: int, precision: str, environment: Mapping[str, Any], batches: str = "") -> None:
        """The attempt's first lines: what runs, in which precision, where."""
        batch = f", {batches}" if batches else ""
        what = (f"resumed at iteration {iteration} of {self.total}" if iteration
                else f"started: {kind}, {self.total} iterations ({self.epochs} epochs of {self.ipe}{batch})")
        self.folder.say(f"{what}{_PRECISION}{precision} on {environment.get('device', '?')}")
        self.folder.say(f"environment: {provenance.one_line(environment)}")

    def step(self, iteration: int, epoch: int, lr: float, stats: Mapping[str, float], rate: float) -> None:
        self.folder.log({"iteration": iteration, "epoch": epoch, "lr": lr, **stats})
        terms = " ".join(f"{k} {_num(v)}" for k, v in stats.items())
        self.folder.say(f"it {iteration}/{self.total} epoch {epoch + 1}/{self.epochs} {terms} lr {lr:.2e} {rate:.2f} it/s")
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", value, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)
            self.writer.add_scalar("train/it_per_s", rate, iteration)

    def validation(self, iteration: int, epoch: int, name: str, score: float, best: bool) -> None:
        self.folder.log({"iteration": iteration, "epoch": epoch, name: score})
        self.folder.say(f"epoch {epoch + 1}/{self.epochs} (it {iteration}): {name} {_num(score)}"
                        + (" (best so far: best.pt)" if best else ""))
        if self.writer is not None:
            self.writer.add_scalar(f"val/{name}", score, iteration)
            self.writer.flush()

    def end(self, iteration: int, seconds: float, error: Optional[BaseException] = None, saved: Optional[int] = None) -> None:
        """The attempt's last line: finished, interrupted or stopped by an error, and (``saved``:
        the iteration of the last ``last.pt``) where ``--resume`` will continue."""
        if error is None:
            self.folder.say(f"finished: {iteration} iterations (this attempt {duration(seconds)}); {self.folder.final.name}")
            self.close()
            return
        resume = (f"--resume continues from {self.folder.last.name} at iteration {saved}" if saved is not None
                  else "no checkpoint of this attempt was written")
        if isinstance(error, KeyboardInterrupt):
            self.folder.say(f"interrupted at iteration {iteration}; {resume}")
        else:
            message = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.folder.say(f"stopped at iteration {iteration}: {message} ({resume})")
        self.close()

    def close(self) -> None:
        """Flush and close the TensorBoard files."""
        if self.writer is not None:
            self.writer.close()


def logged_precision(run_dir: Path) -> Optional[str]:
    """'bf16 on NVIDIA H100 80GB HBM3': the precision and device of the run's latest attempt, as
    its ``train.log`` says (None without one), for the stage's summary."""
    try:
        lines = (Path(run_dir) / "train.log").read_text().splitlines()
    except OSError:
        return None
    said = [ln.rpartition(_PRECISION)[2] for ln in lines if _PRECISION in ln]
    return said[-1] if said else None


_PRECISION = "; precision "  # how TrainLog.start introduces it


def _num(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def prepare_run(folder: RunFolder, run_config: Mapping[str, Any], resume: bool) -> tuple[Optional[dict], Optional[dict]]:
    """``(finished, to_resume)`` for ``--resume``: the final checkpoint of a finished run, or
    the last checkpoint to continue (None, None for a fresh run or nothing to resume). Both
    are checked against ``run_config`` before anything of the run is written, so a refused
    resume leaves the folder as it was."""
    if not resume:
        return None, None
    if folder.final.exists():
        state = load_checkpoint(folder.final)
        check_resumable(state, run_config, folder.final)
        return state, None
    state = folder.resume_state()
    if state is not None:
        check_resumable(state, run_config, folder.last)
    return None, state


@dataclass
class LoopConfig:
    epochs: int
    iters_per_epoch: int
    ckpt_every: int = 50  # iterations between "last.pt" saves (and at every epoch end)
    log_every: int = 10
    # also keep each epoch's weights as epoch_<k>.pt: what the network (and an expander
    # reading it) knew after each epoch, for looking back at a run
    keep_epochs: bool = False


StepFn = Callable[[dict, int], dict[str, float]]
EpochLoaderFn = Callable[[int, int], Iterable[dict]]  # (epoch, start_batch) -> batches


def _saved_iteration(folder: RunFolder) -> str:
    try:
        return str(int(load_checkpoint(folder.last)["iteration"]))
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def run_loop(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    loop: LoopConfig,
    folder: RunFolder,
    make_loader: EpochLoaderFn,
    step: StepFn,
    model_config: Mapping[str, Any],
    run_config: Mapping[str, Any],
    kind: str,
    on_epoch_end: Optional[Callable[[int], Optional[float]]] = None,
    val_name: str = "val_miou",
    progress: Optional[Callable[..., None]] = None,
    is_main: bool = True,
    resume_from: Optional[dict[str, Any]] = None,
    ema: Optional[WeightEma] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    precision: str = "fp32",
    environment: Optional[Mapping[str, Any]] = None,
    tensorboard: bool = False,
    batches: str = "",
) -> dict[str, Any]:
    """Train for ``loop.epochs`` epochs; returns the final checkpoint state.

    ``on_epoch_end(epoch)`` may return a validation score (logged as ``val_name``): the best one
    is kept in ``best.pt``.
    With ``ema``, a checkpoint's ``model`` is the averaged weights (what inference
    uses) and ``train_model`` the weights SGD is training. ``scaler``: the fp16 gradient
    scaler ``step`` uses, saved and restored with the rest. ``precision`` and ``environment``
    (``provenance.environment``) are recorded in every checkpoint and in ``train.log``;
    ``tensorboard`` also writes TensorBoard scalars to ``tb/``.
    """
    env = dict(environment) if environment is not None else provenance.environment()
    run = _Position(model=model, optimizer=optimizer, schedule=schedule, loop=loop, kind=kind,
                    model_config=model_config, run_config=run_config, ema=ema, scaler=scaler,
                    precision=precision, environment=env)
    if resume_from is not None:
        check_resumable(resume_from, run_config, folder.last)
        run.iteration, run.best = _restore(resume_from, model, optimizer, ema, folder.last, scaler)
        run.saved = run.iteration
        run.earlier = _earlier_environments(resume_from, env)
    total = loop.epochs * loop.iters_per_epoch
    log = TrainLog(folder, total, loop.iters_per_epoch, loop.epochs, tensorboard=tensorboard,
                   start_iteration=run.iteration) if is_main else None
    if log is not None:
        log.start(kind, run.iteration, precision, env, batches)
    model.train()
    t0, seen = time.perf_counter(), 0
    try:
        while run.iteration < total:
            epoch, start = divmod(run.iteration, loop.iters_per_epoch)
            for batch in make_loader(epoch, start):
                lr = schedule.lr(run.iteration)
                apply_lr(optimizer, lr)
                stats = step(batch, run.iteration)
                _stop_unless_finite(stats, folder, run.iteration, epoch)
                if ema is not None:
                    ema.update(_unwrap(model))
                run.iteration += 1
                seen += 1
                if log is not None and (run.iteration % loop.log_every == 0 or run.iteration == total):
                    log.step(run.iteration, epoch, lr, stats, seen / (time.perf_counter() - t0))
                if progress:
                    progress(run.iteration, total, info=f"epoch {epoch + 1}/{loop.epochs}, loss {stats.get('loss', float('nan')):.3f}, lr {lr:.1e}")
                if run.iteration % loop.iters_per_epoch == 0:
                    break
                if is_main and run.iteration % loop.ckpt_every == 0:
                    run.save_last(folder)
            # a loader that yields fewer batches than planned still ends the epoch
            run.iteration = max(run.iteration, (epoch + 1) * loop.iters_per_epoch)
            score = on_epoch_end(epoch) if on_epoch_end else None
            if is_main:
                run.end_epoch(folder, log, epoch, score, val_name)
            model.train()
        final = run.state()
        if is_main:
            save_checkpoint(folder.final, final)
    except BaseException as err:  # noqa: BLE001 - recorded in train.log, then raised as it was
        if log is not None:
            try:
                log.end(run.iteration, time.perf_counter() - t0, err, run.saved)
            except OSError:  # a full disk takes train.log too: the error itself matters more
                pass
        raise
    if log is not None:
        log.end(run.iteration, time.perf_counter() - t0)
    return final


class _Position:
    """Where a run stands (iteration, best validation score, the iteration ``last.pt`` holds)
    and what a checkpoint of it contains."""

    def __init__(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 loop: LoopConfig, kind: str, model_config: Mapping[str, Any], run_config: Mapping[str, Any],
                 ema: Optional[WeightEma], scaler: Optional[torch.amp.GradScaler], precision: str,
                 environment: Mapping[str, Any]) -> None:
        self.model, self.optimizer, self.schedule, self.loop = model, optimizer, schedule, loop
        self.kind, self.model_config, self.run_config = kind, model_config, run_config
        self.ema, self.scaler, self.precision, self.environment = ema, scaler, precision, environment
        self.iteration, self.best = 0, -math.inf
        self.saved: Optional[int] = None  # last.pt's iteration, for the message of a stopped run
        self.earlier: list = []

    def state(self) -> dict[str, Any]:
        weights = {"model": _unwrap(self.model).state_dict()}
        if self.ema is not None:
            weights = {"model": self.ema.model.state_dict(), "train_model": _unwrap(self.model).state_dict(),
                       "ema_updates": self.ema.updates}
        return {
            **weights,
            "kind": self.kind,
            "model_config": dict(self.model_config),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"iteration": self.iteration, "schedule": self.schedule.__dict__},
            "iteration": self.iteration,
            "epoch": self.iteration // self.loop.iters_per_epoch,
            "best": self.best,
            "rng": rng_state(),
            "config": dict(self.run_config),
            "config_fingerprint": self.run_config.get("fingerprint"),
            # provenance, in no fingerprint: a run resumed elsewhere is the same run
            "precision": self.precision,
            "environment": self.environment,
            **({"earlier_environments": self.earlier} if self.earlier else {}),
            **({"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def save_last(self, folder: RunFolder, state: Optional[dict[str, Any]] = None) -> None:
        save_checkpoint(folder.last, state if state is not None else self.state())
        self.saved = self.iteration

    def end_epoch(self, folder: RunFolder, log: TrainLog, epoch: int, score: Optional[float], val_name: str) -> None:
        """Log the epoch's validation score (``best.pt`` when it improved), save ``last.pt``
        and, with ``keep_epochs``, the epoch's own checkpoint: one state for all three (the
        optimiser's and RNG states gathered once, not per file)."""
        improved = score is not None and score > self.best
        if score is not None:
            log.validation(self.iteration, epoch, val_name, score, improved)
        if improved:
            self.best = score
        state = self.state()
        if improved:
            save_checkpoint(folder.best, state)
        self.save_last(folder, state)
        if self.loop.keep_epochs:
            save_checkpoint(folder.epoch(epoch + 1), state)


def _earlier_environments(state: Mapping[str, Any], env: Mapping[str, Any]) -> list:
    """The environments of a run's earlier attempts, when the checkpoint resumed from was made
    in another one than this (another machine, another torch)."""
    earlier = list(state.get("earlier_environments") or [])
    before = state.get("environment")
    if before and dict(before) != dict(env):
        earlier.append(dict(before))
    return earlier


def _restore(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             ema: Optional[WeightEma], source: Path, scaler: Optional[torch.amp.GradScaler] = None) -> tuple[int, float]:
    """Load a checkpoint's weights, optimiser, gradient-scaler and RNG states; its (iteration,
    best score)."""
    if ema is not None:
        load_model_state(_unwrap(model), state["train_model"], source)
        load_model_state(ema.model, state["model"], source)
        ema.updates = int(state["ema_updates"])
    else:
        load_model_state(_unwrap(model), state["model"], source)
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("grad_scaler"):  # absent: the run was in bf16 until now
        scaler.load_state_dict(state["grad_scaler"])
    set_rng_state(state["rng"])
    return int(state["iteration"]), float(state.get("best", -math.inf))


def _stop_unless_finite(stats: Mapping[str, float], folder: RunFolder, iteration: int, epoch: int) -> None:
    """Nothing of a step whose loss is not finite is saved: the last checkpoint on disk stays the last good one."""
    if math.isfinite(stats.get("loss", 0.0)):
        return
    kept = f"{folder.last} keeps iteration {_saved_iteration(folder)}" if folder.last.exists() else "no checkpoint was written yet"
    raise DgcnError(
        f"the training loss became {stats['loss']} at iteration {iteration + 1} (epoch {epoch + 1}); "
        f"stopped ({kept}): lower --lr and rerun with --overwrite"
    )


def check_resumable(state: Mapping[str, Any], run_config: Mapping[str, Any], source: Path) -> None:
    """Refuse to continue a checkpoint made with options that define another run."""
    if state.get("config_fingerprint") != run_config.get("fingerprint"):
        raise CheckpointError(f"{source} was made with another configuration; resume with the same options, or --overwrite")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
