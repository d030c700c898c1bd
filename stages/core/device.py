"""Choosing the device and making runs reproducible."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import DgcnError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DgcnError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DgcnError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def precision(device: torch.device, enabled: bool = True) -> str:
    """What ``autocast`` computes in on ``device``: "bf16" on a CUDA device that has it
    (Ampere and later), "fp16" on an older one (training then needs a gradient scaler:
    ``grad_scaler``), "fp32" on the CPU or with ``enabled`` false (``--no-amp``).

    Emulated bf16 does not count: torch's ``is_bf16_supported`` says yes on pre-Ampere GPUs
    that can only emulate it (since torch 2.3), many times slower than their fp16 and without
    cuDNN's bf16 convolutions. So the device's own compute capability decides (8.0 and up:
    Ampere, Hopper, ...; ROCm builds: the GPUs torch supports there all have bf16), asked of
    ``device`` itself, not of whichever GPU is current."""
    if not enabled or device.type != "cuda":
        return "fp32"
    if torch.version.hip:
        return "bf16"
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _minor = torch.cuda.get_device_capability(index)
    return "bf16" if major >= 8 else "fp16"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, enabled: bool = True):
    """Mixed-precision autocast on CUDA in ``precision``'s dtype; a no-op context on the CPU."""
    dtype = _DTYPES.get(precision(device, enabled))
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(device: torch.device, enabled: bool = True) -> "torch.amp.GradScaler | None":
    """A gradient scaler where training runs in fp16 (small gradients would underflow to
    zero without one); None for bf16 (fp32's exponent range) and fp32."""
    if precision(device, enabled) != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a network to ``device`` with its convolution weights channels-last.

    oneDNN (CPU) and cuDNN pick their fast kernels for that layout, and a convolution
    whose weight is channels-last makes its output channels-last, so the whole network
    follows without touching the inputs. On two CPU cores EfficientNet-Lite0's
    forward+backward (depthwise convolutions) ran 1.8x faster, ResNet-50 1.1x
    (``make bench``, throughput lines). Results differ from the default layout only by
    float rounding.
    """
    return model.to(device=device, memory_format=torch.channels_last)
