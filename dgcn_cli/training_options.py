"""Options and helpers of the commands that train a network (``cam``, ``train``, ``retrain``):
declared once, so the three read the same flags the same way."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from stages.core.nets import DEFAULT_HEAD, HEADS
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.loop import logged_precision

from .common import data_config, out, parse_range, parse_warmup

ConfigOpt = typer.Option(None, "--config", exists=True, dir_okay=False,
                         help="Rerun with the settings of a run's config.json; options given here override it.")

RescaleOpt = typer.Option("1", "--rescale", help="Random rescale range LO,HI before the crop; 1 = none (the published code; e.g. 0.7,1.3).")
HeadMultOpt = typer.Option(10.0, "--head-lr-mult", help="Learning-rate factor of the new head (paper: 10; 1 suits a backbone trained from scratch).")
# the schedule options train and retrain share (paper defaults, docs/method.md §5)
EpochsOpt = typer.Option(7, "--epochs", help="Training epochs.")
BatchOpt = typer.Option(16, "--batch-size", help="Images per batch (per process under DDP).")
CropOpt = typer.Option(321, "--crop", help="Training crop size (paper: 321).")
LrOpt = typer.Option(5e-4, "--lr", help="Backbone learning rate (the head gets --head-lr-mult times it).")
WarmupOpt = typer.Option("200", "--warmup", help="Warm-up: iterations (paper: 200, about 4% of its VOC run), or a share of this run's iterations such as 5%.")
AmpOpt = typer.Option(True, "--amp/--no-amp", help="Mixed precision on CUDA: bf16 autocast, fp16 with a gradient scaler on GPUs without bf16.")
ValSplitOpt = typer.Option(None, "--val-split", help="Validate after each epoch on this split and keep the best in best.pt: single-scale mIoU for a segmenter, mAP of the image labels for the classifier.")
LrStepOpt = typer.Option(3.0, "--lr-step-epochs", help="Multiply the learning rate by 0.3 every this many epochs (paper: 3; --lr-schedule step).")
LrScheduleOpt = typer.Option("step", "--lr-schedule",
                             help="Learning-rate decay: step (x0.3 every --lr-step-epochs, the published DGCN training) or poly "
                                  "(lr x (1 - it/max_it)^--poly-power, Caffe's poly: DSRG's retraining). The warm-up multiplies either.")
PolyPowerOpt = typer.Option(0.9, "--poly-power", help="Power of --lr-schedule poly (DSRG: 0.9).")
RepeatEnclosedOpt = typer.Option(
    False, "--repeat-enclosed-params/--no-repeat-enclosed-params",
    help="Reproduce hustvl/DGCN's optimiser exactly: it lists each backbone parameter once per module enclosing it "
         "(conv1, bn1, layer1-4 and each submodule down to the layer holding it), so SGD steps it that many times per "
         "iteration, with one momentum buffer (a ResNet bottleneck conv 3 times, a downsample conv 4). Other backbones: "
         "the same walk over their top-level modules. Off: every parameter steps once.")
EmaOpt = typer.Option(0.0, "--ema",
                      help="Keep an exponential moving average of the weights with this decay (e.g. 0.99) and use it for "
                           "validation and the saved model; 0 (the paper) keeps the last weights.")
KeepEpochsOpt = typer.Option(False, "--keep-epochs", help="Also keep each epoch's weights in the run folder as "
                                                           "epoch_<k>.pt (to label or predict with the network of any epoch).")
TensorboardOpt = typer.Option(False, "--tensorboard", help="Also log the training's scalars for TensorBoard in the run folder's tb/ "
                                                             "(needs the tensorboard package: pip install 'dgcn[tensorboard]').")
NprocOpt = typer.Option(1, "--nproc", min=1, help="Processes for distributed (DDP) training, launched with torchrun.")


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


def optim_config(p: dict[str, Any]) -> OptimConfig:
    warmup_iters, warmup_fraction = parse_warmup(p["warmup"])
    return OptimConfig(epochs=p["epochs"], batch_size=p["batch_size"], crop=p["crop"], lr=p["lr"], warmup_iters=warmup_iters,
                       warmup_fraction=warmup_fraction, step_epochs=p["lr_step"], head_lr_mult=p["head_mult"],
                       ema_decay=p["ema"], scale_range=parse_range(p["rescale"], "--rescale"),
                       lr_schedule=p["lr_schedule"], poly_power=p["poly_power"],
                       repeat_enclosed_params=p["repeat_enclosed_params"])


def split_data(p: dict[str, Any], split: str):
    return data_config(p["dataset"], p["data_root"], split, p["labels_file"], p["cache_dir"])


def run_config(p: dict[str, Any]) -> RunConfig:
    val = split_data(p, p["val_split"]) if p["val_split"] else None
    return RunConfig(out=p["out_dir"], device=p["device"], seed=p["seed"], workers=p["workers"], amp=p["amp"], val=val,
                     resume=p["resume"], overwrite=p["overwrite"], tensorboard=p["tensorboard"],
                     keep_epochs=p["keep_epochs"])


def print_precision(run_dir: Path) -> None:
    """After the summary: the precision the run trained in and where its log is (rank 0 alone
    under torchrun: the others write no log)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    said = logged_precision(run_dir)
    if said is not None:
        out.print(f"trained in {said} (log: {Path(run_dir) / 'train.log'})", highlight=False, soft_wrap=True)


HeadOpt = typer.Option(DEFAULT_HEAD, "--head", help=f"Segmentation head: {', '.join(HEADS)} (largefov: one 3x3 conv at dilation 12, the published code's; aspp: DeepLab-v2's rates 6/12/18/24).")

FreezeBnOpt = typer.Option(None, "--freeze-bn/--train-bn", help="Keep the backbone's BatchNorm scale/shift fixed (the published code). Default: frozen for pretrained weights, trained for --weights none.", show_default=False)
