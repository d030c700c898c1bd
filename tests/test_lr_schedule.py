"""The "poly" learning-rate schedule (DSRG's retraining: Caffe's lr x (1 - it/max_it)^power):
known answers with and without the warm-up, the option reaching every training command's
config and ``--config`` reruns, bad values refused in one line, and fingerprints of runs made
with the default options unchanged by the new settings."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages.core.checks import OptionError
from stages.core.config import ADDED_DEFAULTS, config_fingerprint, to_jsonable
from stages.core.train.fit import OptimConfig, make_schedule
from stages.core.train.loop import Schedule


def test_poly_known_answers_without_warmup():
    # 10 iterations: lr(i) = 0.01 * (1 - i/10)^0.9
    s = Schedule(0.01, 5, warmup_iters=0, kind="poly", power=0.9, total_iters=10)
    assert s.lr(0) == pytest.approx(0.01)  # Caffe counts from 0: the first step has the base rate
    assert s.lr(5) == pytest.approx(0.00535886731)  # 0.01 x 0.5^0.9
    assert s.lr(9) == pytest.approx(0.00125892541)  # 0.01 x 0.1^0.9: the last iteration
    assert s.lr(10) == 0.0  # past the end: no negative rate


def test_poly_known_answers_with_warmup():
    # the warm-up (i+1)/4 for i < 4 multiplies the poly factor, as it multiplies the step decay
    s = Schedule(0.01, 5, warmup_iters=4, kind="poly", power=0.9, total_iters=10)
    assert s.lr(0) == pytest.approx(0.0025)  # 0.01 x 1/4 x 1
    assert s.lr(2) == pytest.approx(0.00613539110)  # 0.01 x 3/4 x 0.8^0.9
    assert s.lr(5) == pytest.approx(0.00535886731)  # warm-up over: the poly rate alone
    assert s.lr(9) == pytest.approx(0.00125892541)
    # power 1 is linear
    assert Schedule(1.0, 5, 0, kind="poly", power=1.0, total_iters=10).lr(3) == pytest.approx(0.7)


def test_make_schedule_decays_over_the_whole_run():
    optim = OptimConfig(epochs=3, lr=0.02, warmup_iters=0, lr_schedule="poly", poly_power=0.9)
    s = make_schedule(optim, iters_per_epoch=4)
    assert (s.kind, s.total_iters, s.power) == ("poly", 12, 0.9)
    assert s.lr(6) == pytest.approx(0.02 * 0.5**0.9)
    # the default is the published DGCN training's step decay, x0.3 every 3 epochs
    step = make_schedule(OptimConfig(epochs=7, lr=0.02, warmup_iters=0), iters_per_epoch=4)
    assert step.lr(11) == pytest.approx(0.02) and step.lr(12) == pytest.approx(0.006)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr_schedule": "cosine"}, "--lr-schedule must be one of step, poly, got 'cosine'"),
    ({"poly_power": 0.0}, "--poly-power must be a finite number > 0, got 0.0"),
    ({"poly_power": -1.0}, "--poly-power must be a finite number > 0"),
    ({"repeat_enclosed_params": "yes"}, "--repeat-enclosed-params must be true or false"),
])
def test_bad_schedule_values_are_refused_by_the_config(kwargs, message):
    with pytest.raises(OptionError, match=message):
        OptimConfig(**kwargs)


@pytest.mark.parametrize("args, message", [
    (["--lr-schedule", "cosine"], "--lr-schedule must be one of step, poly, got 'cosine'"),
    (["--poly-power", "0"], "--poly-power must be a finite number > 0"),
])
def test_bad_schedule_option_is_one_line(tmp_path, train_demo_root, train_seeds, args, message):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--seeds", str(train_seeds), "--dataset", "demo",
                                 "--data-root", str(train_demo_root), "--backbone", "tiny", "--weights", "none",
                                 "--device", "cpu", *args])
    assert r.exit_code != 0 and message in r.output, r.output
    assert "Traceback" not in r.output and len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "run").exists()


def test_every_training_command_takes_the_options():
    # declared once on OptimConfig: every command built from a config holding one has them
    for command in ("cam", "train", "retrain"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--lr-schedule" in text and "--poly-power" in text and "--repeat-enclosed-params" in text


def test_poly_reaches_the_run_and_a_config_rerun(tmp_path, train_demo_root, train_seeds):
    a = tmp_path / "a"
    common = ["--dataset", "demo", "--data-root", str(train_demo_root), "--backbone", "tiny", "--weights", "none",
              "--epochs", "1", "--batch-size", "4", "--crop", "48", "--lr", "0.01", "--warmup", "0", "--expander", "none",
              "--boundary-loss", "none", "--device", "cpu"]
    r = CliRunner().invoke(app, ["train", "--seeds", str(train_seeds), "--out", str(a), *common,
                                 "--lr-schedule", "poly", "--poly-power", "0.5", "--repeat-enclosed-params"])
    assert r.exit_code == 0, r.output
    ca = json.loads((a / "config.json").read_text())
    assert ca["optim"]["lr_schedule"] == "poly" and ca["optim"]["poly_power"] == 0.5
    assert ca["optim"]["repeat_enclosed_params"] is True
    lrs = [json.loads(ln)["lr"] for ln in (a / "metrics.jsonl").read_text().splitlines() if '"lr"' in ln]
    assert lrs == [pytest.approx(0.01 * (1 - 3 / 4) ** 0.5)]  # logged at the 4th and last iteration of 4
    b = tmp_path / "b"
    r = CliRunner().invoke(app, ["train", "--config", str(a / "config.json"), "--out", str(b)])
    assert r.exit_code == 0, r.output
    cb = json.loads((b / "config.json").read_text())
    assert cb["optim"] == ca["optim"] and cb["fingerprint"] == ca["fingerprint"]
    # the command line overrides the file
    c = tmp_path / "c"
    r = CliRunner().invoke(app, ["train", "--config", str(a / "config.json"), "--out", str(c), "--lr-schedule", "step",
                                 "--no-repeat-enclosed-params"])
    assert r.exit_code == 0, r.output
    cc = json.loads((c / "config.json").read_text())
    assert cc["optim"]["lr_schedule"] == "step" and cc["optim"]["repeat_enclosed_params"] is False
    assert cc["optim"]["poly_power"] == 0.5 and cc["fingerprint"] != ca["fingerprint"]


def test_a_config_json_from_before_the_options_reruns_with_their_defaults(tmp_path, train_demo_root, train_seeds):
    a = tmp_path / "a"
    r = CliRunner().invoke(app, ["train", "--seeds", str(train_seeds), "--out", str(a), "--dataset", "demo",
                                 "--data-root", str(train_demo_root), "--backbone", "tiny", "--weights", "none",
                                 "--epochs", "1", "--batch-size", "4", "--crop", "48", "--expander", "none",
                                 "--boundary-loss", "none", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    old = json.loads((a / "config.json").read_text())
    for key in ADDED_DEFAULTS:
        del old["optim"][key]
    (tmp_path / "old.json").write_text(json.dumps(old))
    r = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "old.json"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["fingerprint"] == old["fingerprint"]


def test_added_defaults_are_optim_configs_defaults():
    defaults = OptimConfig()
    assert {k: getattr(defaults, k) for k in ADDED_DEFAULTS} == ADDED_DEFAULTS


def test_default_options_keep_the_fingerprints_of_runs_and_files_made_before_them(tmp_path, make_train_config, train_data):
    from stages.cam import CAM_OPTIM, CamConfig
    from stages.core.train.fit import RunConfig, _run_record

    weak = train_data.build().weak()
    for cfg in (make_train_config(tmp_path / "run"), CamConfig(run=RunConfig(out=tmp_path / "cam"), optim=CAM_OPTIM)):
        now = to_jsonable(cfg)
        before = json.loads(json.dumps(now))
        for key in ADDED_DEFAULTS:
            del before["optim"][key]  # a run recorded before these settings existed
        record = _run_record({"stage": "x", **now}, weak, 1, ())
        assert record["optim"]["lr_schedule"] == "step"  # recorded in config.json all the same
        assert record["fingerprint"] == _run_record({"stage": "x", **before}, weak, 1, ())["fingerprint"]
        # the artifacts' fingerprint (cams_<split>.h5, pseudo_labels.h5) hashes the whole config too
        assert config_fingerprint({"config": now}) == config_fingerprint({"config": before})
        # the value is known: a non-default one is another run
        poly = to_jsonable(replace(cfg, optim=replace(cfg.optim, lr_schedule="poly")))
        assert config_fingerprint({"config": poly}) != config_fingerprint({"config": before})


def test_the_fingerprint_of_a_default_train_run_is_what_it_was(tmp_path, make_train_config, train_data):
    # the value the code before the new settings gives for this record (paths made relative)
    from stages.core.train.fit import _run_record

    weak = train_data.build().weak()
    record = to_jsonable({"stage": "train", **make_train_config(tmp_path / "run").__dict__})
    record["seeds"] = "seeds.h5"
    record["data"]["data_root"] = "demo"
    assert _run_record(record, weak, 1, ())["fingerprint"] == FINGERPRINT_BEFORE


# computed with the code of commit f1a4abc (before lr_schedule, poly_power, repeat_enclosed_params)
FINGERPRINT_BEFORE = "acef547e070038ef"
