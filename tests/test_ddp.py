"""Distributed training on the CPU: torchrun with two processes (gloo), and the
epoch sampler's shards (disjoint, together the whole epoch)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages.core.io.checkpoint import load_checkpoint
from stages.core.predict.segmenter import load_segmenter_checkpoint
from stages.core.train.batches import EpochSampler

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [16, 17, 5])
@pytest.mark.parametrize("world", [2, 3])
def test_sampler_shards_are_disjoint_and_cover_the_epoch(n, world):
    for epoch in (0, 3):
        shards = [list(EpochSampler(n, seed=7, epoch=epoch, shard=(r, world))) for r in range(world)]
        flat = [i for s in shards for i in s]
        assert len(flat) == len(set(flat)) == n  # disjoint and complete
        assert sorted(flat) == [epoch * n + i for i in range(n)]  # indices carry the epoch
        assert [len(EpochSampler(n, 7, epoch, shard=(r, world))) for r in range(world)] == [len(s) for s in shards]
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        # a mid-epoch start skips the same first items of each rank's own shard
        for r in range(world):
            assert list(EpochSampler(n, 7, epoch, start=2, shard=(r, world))) == shards[r][2:]
    # the single-process order is a permutation that changes with the epoch
    a, b = list(EpochSampler(n, 7, 0)), [i - n for i in EpochSampler(n, 7, 1)]
    assert sorted(a) == sorted(b) == list(range(n)) and a != b


@pytest.mark.slow
@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_torchrun_two_cpu_processes(tmp_path, train_data, train_seeds, ema):
    out = tmp_path / "run"
    env = {**os.environ, "DGCN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "dgcn_cli", "train", "--out", str(out), "--seeds", str(train_seeds),
        "--dataset", "demo", "--data-root", str(train_data.data_root),
        "--backbone", "tiny", "--weights", "none", "--epochs", "2", "--batch-size", "4", "--crop", "64",
        "--lr", "0.01", "--warmup", "2", "--boundary-loss", "none", "--device", "cpu", "--val-split", "val", "--ema", ema,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (out / "final.pt").is_file()
    state = load_checkpoint(out / "final.pt")
    # 16 images over 2 processes at batch 4: 2 iterations per epoch, 2 epochs
    assert state["iteration"] == 4 and state["epoch"] == 2
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped
    # with a weight average, "model" is the average (validated below) and "train_model" SGD's weights
    assert ("train_model" in state) == (ema != "0")
    assert not any(k.startswith("module.") for k in state.get("train_model", {}))
    seg = load_segmenter_checkpoint(out / "final.pt")
    assert seg.model.init_args["backbone"] == "tiny" and seg.num_classes == 6
    # only rank 0 writes: one metrics record per logged iteration, no stray partial files
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [4]
    # validation is sharded over both ranks and summed: one score per epoch, from rank 0
    val = [r["val_miou"] for r in records if "val_miou" in r]
    assert len(val) == 2 and all(0.0 <= v <= 1.0 for v in val)
    # the sharded, all-reduced score of the last epoch equals one process scoring every image
    from stages.core.datasets import DataConfig
    from stages.core.train.segmenter import validate

    whole = validate(seg.model, DataConfig("demo", train_data.data_root, "val", cache_dir=tmp_path / "cache"), torch.device("cpu"))
    assert whole == pytest.approx(val[-1], abs=1e-9)
    assert not list(out.glob("*.partial"))


@pytest.mark.slow
def test_torchrun_classifier_two_cpu_processes(tmp_path, train_data):
    """``cam --nproc 2``: the classifier trains in the same loop under DDP, its validation mAP
    is gathered over both ranks, and only rank 0 writes the CAMs."""
    out = tmp_path / "cam"
    env = {**os.environ, "DGCN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable, "-m", "dgcn_cli", "cam", "--nproc", "2", "--out", str(out),
        "--dataset", "demo", "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
        "--epochs", "2", "--batch-size", "4", "--crop", "48", "--lr", "0.05", "--warmup", "2", "--scales", "1",
        "--device", "cpu", "--val-split", "val", "--ema", "0.5",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    state = load_checkpoint(out / "classifier" / "final.pt")
    assert state["kind"] == "classifier" and state["iteration"] == 4 and state["config"]["world_size"] == 2
    records = [json.loads(ln) for ln in (out / "classifier" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_map"] for r in records if "val_map" in r]
    assert len(val) == 2
    # the gathered score of the last epoch equals one process scoring every val image
    from stages.core.datasets import DataConfig
    from stages.core.predict.classifier import load_classifier
    from stages.core.train.classifier import validate

    model = load_classifier(out / "classifier" / "final.pt", torch.device("cpu"))
    whole = validate(model, DataConfig("demo", train_data.data_root, "val", cache_dir=tmp_path / "cache"), torch.device("cpu"))
    assert whole == pytest.approx(val[-1], abs=1e-6)
    assert sorted(p.name for p in out.iterdir()) == ["cams_train.h5", "classifier"]
    assert proc.stdout.count("wrote ") == 1  # one rank reports the CAMs it wrote


def test_cpu_training_on_a_cuda_host_uses_gloo(tmp_path, monkeypatch, make_train_config):
    # nccl cannot reduce CPU tensors: the backend must follow --device, not torch.cuda.is_available()
    import torch

    from stages import train
    from stages.core.train import fit as segtrain

    chosen = []

    class Stop(Exception):
        pass

    def init_process_group(backend, *args, **kwargs):
        chosen.append(backend)
        raise Stop

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(segtrain.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(segtrain.dist, "init_process_group", init_process_group)
    with pytest.raises(Stop):
        train.run(make_train_config(tmp_path / "run"))
    assert chosen == ["gloo"]
