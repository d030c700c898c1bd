"""What every training stage shares: run folders, the learning-rate schedule,
full-state checkpoints and a resumable epoch/iteration loop.

Resume means the same run continues: model, optimizer, iteration and RNG
states are restored, and data order and augmentation depend only on (seed,
epoch, index), so an interrupted-then-resumed run on the CPU ends with the
same weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch

from ..errors import CheckpointError, DgcnError, OutputExistsError
from ..io.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..io.files import write_json_atomic


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up, then x``gamma`` every ``step_epochs`` epochs (GUIDE 1.5)."""

    base_lr: float
    iters_per_epoch: int
    warmup_iters: int = 200
    step_epochs: float = 3.0
    gamma: float = 0.3

    def lr(self, iteration: int) -> float:
        warm = min(1.0, (iteration + 1) / self.warmup_iters) if self.warmup_iters > 0 else 1.0
        steps = math.floor(iteration / max(1, self.iters_per_epoch) / self.step_epochs)
        return self.base_lr * warm * (self.gamma**steps)


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
    """``config.json``, ``metrics.jsonl``, ``last.pt`` and ``best.pt`` of one run."""

    def __init__(self, path: Path, *, resume: bool, overwrite: bool) -> None:
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.final = self.path / "final.pt"
        self.metrics = self.path / "metrics.jsonl"
        if self.last.exists() and not (resume or overwrite):
            done = "finished" if self.final.exists() else f"stopped at iteration {_saved_iteration(self)}"
            raise OutputExistsError(f"{self.path} already holds a run ({done}); pass --resume to continue it or --overwrite to start again")
        if overwrite and not resume:
            for p in (self.last, self.best, self.final, self.metrics):
                p.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_json_atomic(self.path / "config.json", config, indent=2, default=str)

    def log(self, record: Mapping[str, Any]) -> None:
        with open(self.metrics, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    def resume_state(self) -> Optional[dict[str, Any]]:
        return load_checkpoint(self.last) if self.last.exists() else None


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
) -> dict[str, Any]:
    """Train for ``loop.epochs`` epochs; returns the final checkpoint state.

    ``on_epoch_end(epoch)`` may return a validation score (logged as ``val_name``): the best one
    is kept in ``best.pt``.
    With ``ema``, a checkpoint's ``model`` is the averaged weights (what inference
    uses) and ``train_model`` the weights SGD is training.
    """
    iteration, best = 0, -math.inf
    if resume_from is not None:
        check_resumable(resume_from, run_config, folder.last)
        iteration, best = _restore(resume_from, model, optimizer, ema, folder.last)
    total = loop.epochs * loop.iters_per_epoch

    def state() -> dict[str, Any]:
        weights = {"model": _unwrap(model).state_dict()}
        if ema is not None:
            weights = {"model": ema.model.state_dict(), "train_model": _unwrap(model).state_dict(),
                       "ema_updates": ema.updates}
        return {
            **weights,
            "kind": kind,
            "model_config": dict(model_config),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"iteration": iteration, "schedule": schedule.__dict__},
            "iteration": iteration,
            "epoch": iteration // loop.iters_per_epoch,
            "best": best,
            "rng": rng_state(),
            "config": dict(run_config),
            "config_fingerprint": run_config.get("fingerprint"),
        }

    model.train()
    t0, seen = time.perf_counter(), 0
    while iteration < total:
        epoch, start = divmod(iteration, loop.iters_per_epoch)
        for batch in make_loader(epoch, start):
            lr = schedule.lr(iteration)
            apply_lr(optimizer, lr)
            stats = step(batch, iteration)
            _stop_unless_finite(stats, folder, iteration, epoch)
            if ema is not None:
                ema.update(_unwrap(model))
            iteration += 1
            seen += 1
            rate = seen / (time.perf_counter() - t0)
            if is_main and (iteration % loop.log_every == 0 or iteration == total):
                folder.log({"iteration": iteration, "epoch": epoch, "lr": lr, **stats})
            if progress:
                progress(iteration, total, info=f"loss {stats.get('loss', float('nan')):.3f} lr {lr:.2e} {rate:.2f} it/s")
            if iteration % loop.iters_per_epoch == 0:
                break
            if is_main and iteration % loop.ckpt_every == 0:
                save_checkpoint(folder.last, state())
        # a loader that yields fewer batches than planned still ends the epoch
        iteration = max(iteration, (epoch + 1) * loop.iters_per_epoch)
        score = on_epoch_end(epoch) if on_epoch_end else None
        if is_main:
            if score is not None:
                folder.log({"iteration": iteration, "epoch": epoch, val_name: score})
                if score > best:
                    best = score
                    save_checkpoint(folder.best, state())
            save_checkpoint(folder.last, state())
        model.train()
    final = state()
    if is_main:
        save_checkpoint(folder.final, final)
    return final


def _restore(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             ema: Optional[WeightEma], source: Path) -> tuple[int, float]:
    """Load a checkpoint's weights, optimiser and RNG states; its (iteration, best score)."""
    if ema is not None:
        load_model_state(_unwrap(model), state["train_model"], source)
        load_model_state(ema.model, state["model"], source)
        ema.updates = int(state["ema_updates"])
    else:
        load_model_state(_unwrap(model), state["model"], source)
    optimizer.load_state_dict(state["optimizer"])
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
