"""Range checks for config values: every stage config checks its own numbers, so the Python
API refuses what the CLI refuses, with the same one line (``--lr must be ...``)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

from .errors import DgcnError


class OptionError(DgcnError, ValueError):
    """A config value out of its range (or not a finite number)."""


def number(option: str, value: object, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number (an int if ``integer``) in the range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    ok = ok and math.isfinite(value)  # type: ignore[arg-type]
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo  # type: ignore[operator]
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi  # type: ignore[operator]
    if not ok:
        raise OptionError(f"{option} must be {describe(lo, hi, lo_open, hi_open, integer)}, got {value!r}")


def describe(lo, hi, lo_open=False, hi_open=False, integer=False) -> str:
    kind = "an integer" if integer else "a finite number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return kind + (" " + " and ".join(parts) if parts else "")


#: the range every multi-scale option (CAM, test, retrain labelling) accepts
SCALE_RANGE = (0.1, 8.0)


def scales(option: str, values: Sequence[float]) -> None:
    if not values:
        raise OptionError(f"{option} needs at least one scale")
    for v in values:
        number(option, v, lo=SCALE_RANGE[0], hi=SCALE_RANGE[1])


#: learning-rate decays (``Schedule``): x gamma every step_epochs (the published DGCN training),
#: or Caffe's "poly" (DSRG's retraining)
LR_SCHEDULES = ("step", "poly")


def schedule(o) -> None:
    """The numbers of an ``OptimConfig`` (every training stage's schedule)."""
    number("--epochs", o.epochs, lo=1, integer=True)
    number("--batch-size", o.batch_size, lo=1, integer=True)
    number("--crop", o.crop, lo=16, integer=True)
    number("--lr", o.lr, lo=0, lo_open=True)
    number("--head-lr-mult", o.head_lr_mult, lo=0, lo_open=True)
    number("--momentum", o.momentum, lo=0, hi=1, hi_open=True)
    number("optim.weight_decay", o.weight_decay, lo=0)
    number("--warmup", o.warmup_iters, lo=0, integer=True)
    number("--warmup", o.warmup_fraction, lo=0, hi=0.5)
    number("--step-epochs", o.step_epochs, lo=0, lo_open=True)
    if o.lr_schedule not in LR_SCHEDULES:
        raise OptionError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {o.lr_schedule!r}")
    number("--poly-power", o.poly_power, lo=0, lo_open=True)
    if not isinstance(o.repeat_enclosed_params, bool):
        raise OptionError(f"--repeat-enclosed-params must be true or false, got {o.repeat_enclosed_params!r}")
    lo, hi = o.scale_range
    number("--scale-range", lo, lo=SCALE_RANGE[0], hi=SCALE_RANGE[1])
    number("--scale-range", hi, lo=SCALE_RANGE[0], hi=SCALE_RANGE[1])
    if hi < lo:
        raise OptionError(f"--scale-range must be LO,HI with LO <= HI, got {lo:g},{hi:g}")
    number("optim.gamma", o.gamma, lo=0, hi=1, lo_open=True)
    number("optim.ckpt_every", o.ckpt_every, lo=1, integer=True)
    number("--ema-decay", o.ema_decay, lo=0, hi=1, hi_open=True)


def seed_and_workers(o) -> None:
    """A ``RunConfig``'s seed and loader processes."""
    number("--seed", o.seed, lo=0, integer=True)
    number("--workers", o.workers, lo=0, integer=True)
