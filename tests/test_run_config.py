"""``--config RUN/config.json``: a rerun with a run's own settings is the same run."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages.core.io.checkpoint import load_checkpoint


def _invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res


def _cfg(folder):
    return json.loads((folder / "config.json").read_text())


def test_config_rerun_equals_the_original_and_options_override(tmp_path, train_demo_root, train_seeds):
    a = tmp_path / "a"
    res = _invoke("train", "--dataset", "demo", "--data-root", train_demo_root, "--seeds", train_seeds, "--out", a,
                  "--backbone", "tiny", "--weights", "none", "--head", "aspp", "--epochs", "2", "--batch-size", "4",
                  "--crop", "64", "--lr", "0.01", "--warmup", "10%", "--expander", "graphcut", "--expander-opt", "k=5",
                  "--boundary-loss", "none", "--crf-workers", "0", "--rescale", "0.8,1.2", "--seed", "3", "--device", "cpu")
    assert res.exit_code == 0, res.output
    b = tmp_path / "b"
    res = _invoke("train", "--config", a / "config.json", "--out", b)
    assert res.exit_code == 0, res.output
    ca, cb = _cfg(a), _cfg(b)
    assert cb["fingerprint"] == ca["fingerprint"]
    assert cb["optim"] == ca["optim"] and cb["expander_options"] == {"k": 5} and cb["run"]["seed"] == 3
    wa, wb = load_checkpoint(a / "final.pt")["model"], load_checkpoint(b / "final.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # an option on the command line wins over the file; the rest still comes from it
    c = tmp_path / "c"
    res = _invoke("train", "--config", a / "config.json", "--out", c, "--epochs", "1", "--expander", "none")
    assert res.exit_code == 0, res.output
    cc = _cfg(c)
    assert cc["optim"]["epochs"] == 1 and cc["expander"] == "none" and cc["fingerprint"] != ca["fingerprint"]
    assert cc["optim"]["warmup_fraction"] == ca["optim"]["warmup_fraction"] == 0.1
    assert cc["optim"]["scale_range"] == [0.8, 1.2] and cc["run"]["seed"] == 3


def test_config_of_another_stage_or_none_at_all(tmp_path):
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"stage": "train"}))
    res = _invoke("retrain", "--config", other, "--out", tmp_path / "r")
    assert res.exit_code != 0 and "is not the config.json of a `dgcn retrain` run (it is from `dgcn train`)" in res.output
    res = _invoke("train", "--dataset", "demo")
    assert res.exit_code != 0 and "--out is needed" in res.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    res = _invoke("train", "--config", broken)
    assert res.exit_code != 0 and "not a readable run config" in res.output
