"""Resuming ``train``: a run SIGKILLed mid-epoch and resumed ends bit-exact with an
uninterrupted one on the CPU; runs that do not match are refused with one line.

The interrupted run is a child process that kills itself with SIGKILL in the
middle of an epoch, after ``last.pt`` was written mid-epoch and one more
training step was taken (so the resume has work to redo).
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stages import train
from stages.core.datasets import DataConfig
from stages.core.errors import CheckpointError, OutputExistsError
from stages.core.io.checkpoint import load_checkpoint, save_checkpoint
from stages.core.nets import build_segmenter
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.segmenter import ModelConfig

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# 16 images, batch 4: 4 iterations per epoch, 8 in all; last.pt at iterations 2, 4 (epoch end) and 6.
ITERS_PER_EPOCH = 4
KILL_AT_CALL = 8  # the 8th learning-rate update = iteration 7: after last.pt at 6, mid-epoch 2


def resume_config(out: Path, data_root: Path, seeds: Path, *, resume: bool = False, lr: float = 0.01,
                  boundary_loss: str = "crf", ema: float = 0.0) -> train.TrainConfig:
    """The run of these tests: graph cut, CRF boundary loss in-process, random scale/crop/flip."""
    return train.TrainConfig(
        run=RunConfig(out=Path(out), device="cpu", resume=resume),
        seeds=Path(seeds),
        data=DataConfig(dataset="demo", data_root=Path(data_root), split="train"),
        model=ModelConfig("tiny", "none"),
        optim=OptimConfig(epochs=2, batch_size=4, crop=64, lr=lr, warmup_iters=2, ckpt_every=2, ema_decay=ema),
        expander="graphcut",
        boundary_loss=boundary_loss,
        crf_workers=0,
    )


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    repo, tests, out, data_root, seeds, kill_at = sys.argv[1:7]
    sys.path[:0] = [repo, tests]
    from test_resume import resume_config
    from stages import train
    from stages.core.train import loop as training

    real_apply_lr = training.apply_lr
    calls = [0]

    def apply_lr(optimizer, lr):
        calls[0] += 1
        if calls[0] == int(kill_at):
            assert (Path(out) / "last.pt").exists()
            os.kill(os.getpid(), signal.SIGKILL)
        real_apply_lr(optimizer, lr)

    training.apply_lr = apply_lr
    train.run(resume_config(Path(out), Path(data_root), Path(seeds)))
    sys.exit(3)  # never reached: the run is killed first
    """
)


def _start_and_kill(out: Path, data_root: Path, seeds: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), str(TESTS), str(out), str(data_root), str(seeds), str(KILL_AT_CALL)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"model tensor {k} differs"
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys() and len(oa["state"]) > 0
    for k in oa["state"]:
        ma, mb = oa["state"][k]["momentum_buffer"], ob["state"][k]["momentum_buffer"]
        assert ma is not None and torch.equal(ma, mb), f"momentum buffer of parameter {k} differs"


@pytest.mark.slow
def test_kill_and_resume_is_bit_exact(tmp_path, train_demo_root, train_seeds):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = train.run(resume_config(full_dir, train_demo_root, train_seeds)).path

    _start_and_kill(cut_dir, train_demo_root, train_seeds)
    assert not (cut_dir / "final.pt").exists()
    last = load_checkpoint(cut_dir / "last.pt")
    assert last["iteration"] == 6 and last["iteration"] % ITERS_PER_EPOCH != 0  # killed mid-epoch
    assert not list(cut_dir.glob("*.partial"))  # atomic saves: no half-written checkpoint left behind

    # a new run into the folder is refused; --resume continues it
    with pytest.raises(OutputExistsError, match="--resume"):
        train.run(resume_config(cut_dir, train_demo_root, train_seeds))
    resumed = train.run(resume_config(cut_dir, train_demo_root, train_seeds, resume=True)).path
    assert resumed == cut_dir / "final.pt"

    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert a["iteration"] == b["iteration"] == 2 * ITERS_PER_EPOCH
    _assert_same_state(a, b)
    # the global RNG streams continue exactly as well (a model with dropout would depend on them)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["rng"]["numpy"] == b["rng"]["numpy"] and a["rng"]["python"] == b["rng"]["python"]
    # the uninterrupted run really trained: the weights moved away from the seeded init
    torch.manual_seed(0)
    init = build_segmenter("tiny", 6, "none").state_dict()
    assert any(not torch.equal(init[k], a["model"][k]) for k in init if init[k].is_floating_point())

    # resuming a finished run keeps it
    again = train.run(resume_config(cut_dir, train_demo_root, train_seeds, resume=True)).path
    assert again == resumed and torch.equal(load_checkpoint(again)["model"]["head.branches.0.weight"],
                                            b["model"]["head.branches.0.weight"])


def _stop_at(call: int):
    """A learning-rate hook that raises at the ``call``-th update (an in-process interruption)."""
    from stages.core.train import loop as training

    real, calls = training.apply_lr, [0]

    class Stop(Exception):
        pass

    def apply_lr(optimizer, lr):
        calls[0] += 1
        if calls[0] == call:
            raise Stop
        real(optimizer, lr)

    return apply_lr, Stop


def test_interrupted_run_with_weight_ema_resumes_bit_exact(tmp_path, train_demo_root, train_seeds):
    from stages.core.train import loop as training

    full = train.run(resume_config(tmp_path / "full", train_demo_root, train_seeds, boundary_loss="none", ema=0.5)).path
    cut = tmp_path / "cut"
    hook, stop = _stop_at(KILL_AT_CALL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "apply_lr", hook)
        with pytest.raises(stop):
            train.run(resume_config(cut, train_demo_root, train_seeds, boundary_loss="none", ema=0.5))
    resumed = train.run(resume_config(cut, train_demo_root, train_seeds, boundary_loss="none", ema=0.5, resume=True)).path
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    _assert_same_state(a, b)  # "model" is the average here
    assert a["ema_updates"] == b["ema_updates"] == 2 * ITERS_PER_EPOCH
    for k in a["train_model"]:
        assert torch.equal(a["train_model"][k], b["train_model"][k]), f"trained tensor {k} differs"
    # the saved model really is an average, not the last weights
    assert any(not torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"] if a["model"][k].is_floating_point())


def test_weight_ema_follows_its_formula():
    from stages.core.train.loop import WeightEma

    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = WeightEma(net, decay=0.9)
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    with torch.no_grad():
        ema.model[0].weight.fill_(1000.0)  # the initial weights must not count at all
        for t, value in enumerate(values, start=1):
            net[0].weight.fill_(value)
            net[1].num_batches_tracked.fill_(t)
            ema.update(net)
            w = [0.9 ** (t - 1 - s) for s in range(t)]  # the bias-corrected exponential average
            expect = sum(wi * v for wi, v in zip(w, values)) / sum(w)
            assert ema.model[0].weight.item() == pytest.approx(expect)
            assert ema.model[1].num_batches_tracked.item() == t  # integer buffers are copied
    assert not ema.model[0].weight.requires_grad and not ema.model.training
    with pytest.raises(ValueError):
        WeightEma(net, decay=1.0)


@pytest.fixture(scope="module")
def _interrupted_template(tmp_path_factory, train_demo_root, train_seeds):
    out = tmp_path_factory.mktemp("interrupted") / "run"
    cfg = resume_config(out, train_demo_root, train_seeds, boundary_loss="none")
    from stages.core.train import loop as training

    hook, stop = _stop_at(KILL_AT_CALL)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "apply_lr", hook)
        with pytest.raises(stop):
            train.run(cfg)
    assert (out / "last.pt").exists() and not (out / "final.pt").exists()
    return out


@pytest.fixture
def interrupted_run(tmp_path, _interrupted_template):
    """A run folder that holds last.pt (iteration 6, mid-epoch) and no final.pt: a copy per
    test, in another folder than it was started in (a moved run folder still resumes)."""
    return Path(shutil.copytree(_interrupted_template, tmp_path / "run"))


def test_resume_with_other_options_is_refused(interrupted_run, train_demo_root, train_seeds):
    out = interrupted_run
    config_before = (out / "config.json").read_text()
    last_before = (out / "last.pt").read_bytes()
    with pytest.raises(CheckpointError) as err:
        train.run(resume_config(out, train_demo_root, train_seeds, resume=True, lr=0.02, boundary_loss="none"))
    msg = str(err.value)
    assert "\n" not in msg and "last.pt" in msg and "--overwrite" in msg
    # nothing of the run was changed by the refused attempt
    assert (out / "config.json").read_text() == config_before
    assert (out / "last.pt").read_bytes() == last_before
    assert json.loads(config_before)["optim"]["lr"] == 0.01

    # options that only say how to run (workers, device, crf_workers) may change on resume
    cfg = resume_config(out, train_demo_root, train_seeds, resume=True, boundary_loss="none")
    cfg = replace(cfg, crf_workers=3, run=replace(cfg.run, workers=1))
    assert train.run(cfg).path == out / "final.pt"


def test_resume_of_finished_run_with_other_options_is_refused(interrupted_run, train_demo_root, train_seeds):
    out = interrupted_run
    final = train.run(resume_config(out, train_demo_root, train_seeds, resume=True, boundary_loss="none")).path
    assert final.exists()
    with pytest.raises(CheckpointError) as err:
        train.run(resume_config(out, train_demo_root, train_seeds, resume=True, lr=0.02, boundary_loss="none"))
    assert "\n" not in str(err.value)


def test_new_run_into_used_folder_needs_resume_or_overwrite(interrupted_run, train_demo_root, train_seeds):
    out = interrupted_run
    with pytest.raises(OutputExistsError) as err:
        train.run(resume_config(out, train_demo_root, train_seeds, boundary_loss="none"))
    assert "--resume" in str(err.value) and "--overwrite" in str(err.value) and "\n" not in str(err.value)
    cfg = resume_config(out, train_demo_root, train_seeds, boundary_loss="none")
    cfg = replace(cfg, run=replace(cfg.run, overwrite=True))
    assert train.run(cfg).path.exists()
    assert load_checkpoint(out / "final.pt")["iteration"] == 2 * ITERS_PER_EPOCH


def test_resume_from_checkpoint_of_another_model_names_keys(interrupted_run, train_demo_root, train_seeds):
    out = interrupted_run
    state = load_checkpoint(out / "last.pt")
    other = build_segmenter("tiny", 3, "none")  # another class count, same run fingerprint
    state["model"] = other.state_dict()
    save_checkpoint(out / "last.pt", state)
    with pytest.raises(CheckpointError) as err:
        train.run(resume_config(out, train_demo_root, train_seeds, resume=True, boundary_loss="none"))
    msg = str(err.value)
    assert "does not match the model" in msg and "head." in msg and "(3," in msg and "\n" not in msg


class _NotWeights:
    """A custom class: torch.load(weights_only=True) must refuse to rebuild it."""

    def __init__(self) -> None:
        self.payload = 1


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "model_config": {}, "extra": _NotWeights()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "refus" in str(err.value) and "\n" not in str(err.value)
    # the same dict without the object loads
    torch.save({"model": {"w": torch.zeros(2)}, "model_config": {"backbone": "tiny"}}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(2))


def test_resume_from_checkpoint_with_arbitrary_objects_is_refused(interrupted_run, train_demo_root, train_seeds):
    out = interrupted_run
    state = load_checkpoint(out / "last.pt")
    state["extra"] = _NotWeights()
    torch.save(state, out / "last.pt")
    with pytest.raises(CheckpointError, match="refus"):
        train.run(resume_config(out, train_demo_root, train_seeds, resume=True, boundary_loss="none"))
