"""The environment a result was made in: dgcn version and git commit, Python, torch, CUDA,
cuDNN and the device, recorded in every artifact and checkpoint so that two results that
differ can be traced to a change of code, library or hardware.

Never part of a fingerprint: resuming on another machine or after an upgrade continues the
same run, and equal content keeps equal fingerprints. The hostname is deliberately left out:
it names a person's machine and says nothing the device name does not.
"""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .version import __version__

# the keys in the order ``dgcn inspect`` prints them
KEYS = ("dgcn", "git_commit", "git_dirty", "python", "torch", "cuda", "cudnn", "device")


def environment(device: Optional[torch.device | str] = None) -> dict[str, Any]:
    """This process's environment. ``device``: the device the work ran on; None means the
    CUDA device this process has initialised, if any (a stage that never touched CUDA ran on
    the CPU), else the CPU. Keys that cannot be known here are left out (``git_*`` outside a
    git checkout of dgcn or without ``git``; ``cuda``/``cudnn`` on a CPU-only build)."""
    # plain str and int only: checkpoints are read with weights_only=True, which refuses
    # torch's TorchVersion (a str subclass) as a foreign object
    env: dict[str, Any] = {"dgcn": str(__version__), **_git_state(), "python": platform.python_version(),
                           "torch": str(torch.__version__)}
    if torch.version.cuda:
        env["cuda"] = str(torch.version.cuda)
    cudnn = _cudnn_version()
    if cudnn is not None:
        env["cudnn"] = int(cudnn)
    env["device"] = device_name(device)
    return env


def device_name(device: Optional[torch.device | str] = None) -> str:
    dev = torch.device(device) if device is not None else None
    if dev is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev is not None and dev.type == "cuda":
        try:
            return str(torch.cuda.get_device_name(dev))
        except (RuntimeError, AssertionError, AttributeError):  # no such device (any more)
            return str(dev)
    if dev is not None and dev.type not in ("cpu", "cuda"):
        return dev.type
    return cpu_name()


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cudnn_version() -> Optional[int]:
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except RuntimeError:  # a cuDNN that fails to load: nothing to record
        return None


def _package_root() -> Path:
    # the folder holding ``stages/``: a git checkout's root when dgcn runs from one
    return Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def _git_state() -> dict[str, Any]:
    """``git_commit`` and ``git_dirty`` of the checkout dgcn's own files lie in; empty when
    they do not lie in one (an installed wheel), or git is absent or fails. Found from the
    package's location, not the working directory: a run started from another repository
    must not record that one's commit. Cached: once per process (``git status`` may take a
    while in a large tree)."""
    root = _package_root()
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        if top is None or Path(top).resolve() != root:
            return {}  # dgcn is installed inside some other repository (a venv in a project)
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {}
    if commit is None:
        return {}
    state: dict[str, Any] = {"git_commit": commit}
    if status is not None:
        state["git_dirty"] = bool(status)
    return state


def _git(root: Path, *args: str) -> Optional[str]:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)
    return done.stdout.strip() if done.returncode == 0 else None


def describe(env: Optional[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, value) rows for a person; ``not recorded`` for files made before environments
    were recorded."""
    if not env:
        return [("environment", "not recorded")]
    rows = []
    for key in (*KEYS, *(k for k in env if k not in KEYS)):
        if key == "git_dirty" or key not in env:
            continue
        value = env[key]
        if key == "git_commit":
            value = f"{value}{' (uncommitted changes)' if env.get('git_dirty') else ''}"
        rows.append((key, str(value)))
    return rows


def one_line(env: Optional[Mapping[str, Any]]) -> str:
    """The environment in one line, for logs: 'dgcn 0.1.0 (git 1bdae14+), Python 3.11.2, ...'."""
    if not env:
        return "environment not recorded"
    git = env.get("git_commit")
    parts = [f"dgcn {env.get('dgcn', '?')}" + (f" (git {str(git)[:7]}{'+' if env.get('git_dirty') else ''})" if git else "")]
    parts.append(f"Python {env.get('python', '?')}")
    parts.append(f"torch {env.get('torch', '?')}")
    if env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}")
    if env.get("cudnn"):
        parts.append(f"cuDNN {env['cudnn']}")
    parts.append(str(env.get("device", "?")))
    return ", ".join(parts)
