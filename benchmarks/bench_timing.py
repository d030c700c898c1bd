"""Timing shared by the benchmarks: the median of repeated calls, with CUDA work finished
before each clock read (kernels run asynchronously)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[int], object], device: torch.device, repeats: int, warmup: int = 0) -> float:
    """Median seconds of ``fn(i)`` over ``repeats`` calls after ``warmup`` untimed ones
    (``i`` counts every call, warm-up included)."""
    times = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        fn(i)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
