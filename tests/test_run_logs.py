"""What a training run writes for a person while it goes on: ``train.log`` (precision and
environment first, a line per log interval and per validation, how it ended; appended to by
``--resume``), optional TensorBoard scalars in ``tb/``, and the precision it computed in."""
from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from conftest import interrupted_training
from stages import train
from stages.core import device as device_mod
from stages.core.datasets import DataConfig
from stages.core.errors import DgcnError
from stages.core.io.checkpoint import load_checkpoint
from stages.core.train import fit as fit_mod
from stages.core.train import loop as loop_mod
from stages.core.train.fit import train_step

STEP = re.compile(r"^\S+ \S+ it (\d+)/8 epoch (\d)/2 loss \S+ .*lr \S+ [\d.]+ it/s$")


def _lines(run: Path) -> list[str]:
    return (run / "train.log").read_text().splitlines()


def test_train_log_says_precision_environment_steps_validation_and_the_end(tmp_path, make_train_config, train_data):
    out = tmp_path / "run"
    val = DataConfig(dataset="demo", data_root=train_data.data_root, split="val")
    cfg = make_train_config(out, optim={"epochs": 2})
    cfg = replace(cfg, run=replace(cfg.run, val=val))
    train.run(cfg)
    lines = _lines(out)
    assert "started: segmenter, 8 iterations (2 epochs of 4, batch 4); precision fp32 on " in lines[0]
    assert "environment: dgcn " in lines[1] and "torch " in lines[1]
    steps = [STEP.match(ln) for ln in lines if " it " in ln and "/8 epoch" in ln]
    assert all(steps) and [int(m[1]) for m in steps] == [8]  # log_every 10: the last iteration only
    vals = [ln for ln in lines if "val_miou" in ln]
    assert len(vals) == 2 and "epoch 1/2 (it 4): val_miou " in vals[0]
    assert "finished: 8 iterations" in lines[-1]
    state = load_checkpoint(out / "final.pt")
    assert state["precision"] == "fp32" and state["environment"]["torch"] == str(torch.__version__)


def test_resume_appends_to_train_log(tmp_path, make_train_config, monkeypatch):
    out = tmp_path / "run"
    interrupted_training(out, make_train_config)  # last.pt holds iteration 6
    first = _lines(out)
    assert "started:" in first[0] and "interrupted at iteration 6; --resume continues from last.pt at iteration 6" in first[-1]
    train.run(make_train_config(out, resume=True))
    lines = _lines(out)
    assert lines[: len(first)] == first  # appended, not overwritten
    assert "resumed at iteration 6 of 8; precision fp32" in lines[len(first)]
    assert "finished: 8 iterations" in lines[-1]


def test_overwrite_starts_a_new_train_log(tmp_path, make_train_config):
    out = tmp_path / "run"
    train.run(make_train_config(out))
    train.run(make_train_config(out, overwrite=True))
    assert sum("started:" in ln for ln in _lines(out)) == 1


def test_an_attempt_that_died_before_its_first_checkpoint_leaves_no_lines(tmp_path, make_train_config):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("2026-01-01 00:00:00 started: an attempt that died at iteration 3\n")
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.old").write_bytes(b"old curves")
    train.run(make_train_config(run, resume=True))  # nothing to resume: a first start
    log = (run / "train.log").read_text()
    assert "died" not in log and log.count("started:") == 1
    assert not (run / "tb").exists()


def test_tensorboard_scalars(tmp_path, make_train_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = make_train_config(out, optim={"epochs": 2})
    cfg = replace(cfg, run=replace(cfg.run, tensorboard=True))
    plain = make_train_config(tmp_path / "plain", optim={"epochs": 2})
    train.run(cfg)
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/it_per_s"} <= set(tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [8]
    assert torch.isfinite(torch.tensor([e.value for e in acc.Scalars("train/loss")])).all()
    # how a run is watched is not what it trains: the same fingerprint as without TensorBoard
    train.run(plain)
    assert load_checkpoint(out / "final.pt")["config_fingerprint"] == load_checkpoint(tmp_path / "plain" / "final.pt")["config_fingerprint"]


def test_run_fingerprint_without_the_tensorboard_key_is_unchanged(tmp_path, make_train_config, train_data):
    # runs recorded before --tensorboard existed resume: the key is in no fingerprint
    from stages.core.config import to_jsonable
    from stages.core.train.fit import _run_record

    weak = train_data.build().weak()
    record = to_jsonable({"stage": "train", **make_train_config(tmp_path / "run").__dict__})
    before = json.loads(json.dumps(record))
    del before["run"]["tensorboard"]
    assert _run_record(record, weak, 1, ())["fingerprint"] == _run_record(before, weak, 1, ())["fingerprint"]


def test_tensorboard_missing_is_one_line(tmp_path, train_data, train_seeds, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    r = CliRunner().invoke(app, [
        "train", "--out", str(tmp_path / "run"), "--seeds", str(train_seeds), "--dataset", "demo",
        "--data-root", str(train_data.data_root), "--backbone", "tiny", "--weights", "none",
        "--epochs", "1", "--batch-size", "4", "--crop", "64", "--device", "cpu", "--tensorboard",
    ])
    assert r.exit_code == 2, r.output
    assert "pip install 'dgcn[tensorboard]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


# ------------------------------------------------------------------ precision


def _fake_cuda(monkeypatch, bf16: bool, asked: list | None = None) -> None:
    """A CUDA device of compute capability 8.0 (bf16) or 7.0 (V100: fp16), which also says
    bf16 is "supported" (emulated), as torch 2.3+ does on pre-Ampere GPUs."""
    def capability(index=None):
        if asked is not None:
            asked.append(index)
        return (8, 0) if bf16 else (7, 0)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.version, "hip", None)


def test_precision_bf16_only_where_the_gpu_has_it(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    _fake_cuda(monkeypatch, bf16=True)
    assert device_mod.precision(cuda) == "bf16" and device_mod.precision(cuda, enabled=False) == "fp32"
    assert device_mod.precision(cpu) == "fp32"
    _fake_cuda(monkeypatch, bf16=False)
    assert device_mod.precision(cuda) == "fp16"


def test_emulated_bf16_does_not_count_and_the_device_asked_is_the_one_trained_on(monkeypatch):
    asked: list = []
    _fake_cuda(monkeypatch, bf16=False, asked=asked)  # is_bf16_supported says yes: emulation
    assert device_mod.precision(torch.device("cuda", 1)) == "fp16"
    assert device_mod.precision(torch.device("cuda")) == "fp16"
    assert asked == [1, 0]  # cuda:1 itself, then the current device for a bare "cuda"


def test_autocast_dtype_follows_precision(monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, device_type, dtype, enabled):
            seen.update(device_type=device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(device_mod.torch, "autocast", Recorder)
    monkeypatch.setattr(device_mod, "precision", lambda device, enabled=True: "fp16")
    device_mod.autocast(torch.device("cuda"))
    assert seen == {"device_type": "cuda", "dtype": torch.float16, "enabled": True}
    monkeypatch.setattr(device_mod, "precision", lambda device, enabled=True: "fp32")
    device_mod.autocast(torch.device("cpu"))
    assert seen["enabled"] is False


def test_grad_scaler_only_for_fp16(monkeypatch):
    cuda = torch.device("cuda")
    _fake_cuda(monkeypatch, bf16=True)
    assert device_mod.grad_scaler(cuda) is None
    assert device_mod.grad_scaler(torch.device("cpu")) is None
    _fake_cuda(monkeypatch, bf16=False)
    monkeypatch.setattr(device_mod.torch.amp, "GradScaler", lambda device: ("scaler", device))
    assert device_mod.grad_scaler(cuda) == ("scaler", "cuda")


def test_train_step_with_a_gradient_scaler_trains():
    # the fp16 path's scaler calls, exercised on the CPU (no autocast there): the loss goes down
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, y = torch.randn(32, 4), torch.randn(32, 1)

    def loss(m, batch, device, iteration):
        return torch.nn.functional.mse_loss(m(batch["x"]), batch["y"]), {}

    first = train_step(model, opt, loss, {"x": x, "y": y}, torch.device("cpu"), amp=False, scaler=scaler)["loss"]
    for _ in range(20):
        last = train_step(model, opt, loss, {"x": x, "y": y}, torch.device("cpu"), amp=False, scaler=scaler)["loss"]
    assert last < first and scaler.get_scale() == 2.0**10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_records_its_precision(tmp_path, make_train_config):
    cfg = make_train_config(tmp_path / "run", optim={"epochs": 1})
    cfg = replace(cfg, run=replace(cfg.run, device="cuda"))
    train.run(cfg)
    expected = device_mod.precision(torch.device("cuda"))
    assert expected in ("bf16", "fp16")
    state = load_checkpoint(tmp_path / "run" / "final.pt")
    assert state["precision"] == expected and ("grad_scaler" in state) == (expected == "fp16")
    assert state["environment"]["device"] == torch.cuda.get_device_name(0)
    assert f"precision {expected} on {torch.cuda.get_device_name(0)}" in _lines(tmp_path / "run")[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_training_with_a_scaler(tmp_path, make_train_config, monkeypatch):
    # a GPU without bf16, on any GPU: fp16 autocast and the gradient scaler
    fp16 = lambda device, enabled=True: "fp16" if enabled and device.type == "cuda" else "fp32"  # noqa: E731
    monkeypatch.setattr(device_mod, "precision", fp16)
    monkeypatch.setattr(fit_mod, "precision", fp16)
    cfg = make_train_config(tmp_path / "run", optim={"epochs": 1})
    cfg = replace(cfg, run=replace(cfg.run, device="cuda"))
    train.run(cfg)
    state = load_checkpoint(tmp_path / "run" / "final.pt")
    assert state["precision"] == "fp16" and state["grad_scaler"]["scale"] > 0


def test_missing_tensorboard_fails_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(DgcnError, match=r"pip install 'dgcn\[tensorboard\]'"):
        loop_mod.require_tensorboard()
