"""What the commands that train a network (``cam``, ``train``, ``retrain``) share beyond their
config's options (``config_options``): ``--nproc`` and the closing line on precision."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import typer

from stages.core.train.loop import logged_precision

from .common import out

NPROC = inspect.Parameter(
    "nproc", inspect.Parameter.KEYWORD_ONLY, annotation=int,
    default=typer.Option(1, "--nproc", min=1, help="Processes for distributed (DDP) training, launched with torchrun."))


def launch_distributed(nproc: int) -> None:
    """Re-run this very command under torchrun with ``nproc`` processes."""
    args, skip = [], False
    for a in sys.argv[1:]:  # drop "--nproc N" and "--nproc=N": the children run one process each
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "dgcn_cli", *args]
    out.print("launching: " + " ".join(cmd))
    raise typer.Exit(subprocess.call(cmd, env={**os.environ}))


def print_precision(run_dir: Path) -> None:
    """After the summary: the precision the run trained in and where its log is (rank 0 alone
    under torchrun: the others write no log)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    said = logged_precision(run_dir)
    if said is not None:
        out.print(f"trained in {said} (log: {Path(run_dir) / 'train.log'})", highlight=False, soft_wrap=True)
