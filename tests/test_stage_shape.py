"""Every stage has the same shape: ``run(cfg, progress=None) -> StageResult``, and a config
that refuses bad values itself (so nothing but parsing is left to the CLI)."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import typing
from pathlib import Path

import pytest

import stages
from stages import curves
from stages.core.checks import OptionError
from stages.core.errors import DgcnError
from stages.core.stage import StageResult, wrote
from stages.core.train.fit import OptimConfig
from stages.infer import InferConfig
from stages.show import ShowConfig

STAGE_MODULES = sorted(m.name for m in pkgutil.iter_modules(stages.__path__) if not m.ispkg)


def test_every_stage_module_is_found():
    assert {"cam", "saliency_bg", "seeds", "train", "graphcut_label", "retrain", "infer", "evaluate",
            "report", "show", "curves"} <= set(STAGE_MODULES)


@pytest.mark.parametrize("name", STAGE_MODULES)
def test_run_takes_a_config_and_one_progress_callback_and_returns_a_stage_result(name):
    module = importlib.import_module(f"stages.{name}")
    sig = inspect.signature(module.run)
    assert list(sig.parameters) == ["cfg", "progress"], name
    assert sig.parameters["progress"].default is None
    hints = typing.get_type_hints(module.run)
    assert hints["return"] is StageResult, name
    # the config is a frozen dataclass: what a stage ran with cannot change under it
    cfg_type = hints["cfg"]
    assert getattr(cfg_type, "__dataclass_params__").frozen, name


def test_wrote_names_every_file_and_keeps_details():
    r = wrote(Path("a.h5"), Path("b.h5"), warnings=("w",), details={"n": 1})
    assert r.paths == (Path("a.h5"), Path("b.h5")) and r.path == Path("a.h5")
    assert r.summary == "wrote a.h5\nwrote b.h5" and r.warnings == ("w",) and r.details == {"n": 1}


def test_warnings_come_back_in_the_result(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"iteration": i, "epoch": 0, "lr": 0.1, "loss": 1.0 / i} for i in range(1, 6)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"iteration": 6, "lo')
    result = curves.run(curves.CurvesConfig(runs=(run,), out=tmp_path / "c.png"))
    assert result.paths == (tmp_path / "c.png",) and (tmp_path / "c.png").exists()
    assert len(result.warnings) == 1 and "line 6" in result.warnings[0] and "cut short" in result.warnings[0]


@pytest.mark.parametrize("build, message", [
    (lambda: ShowConfig(out=Path("x.png"), n=0), "--n 0"),
    (lambda: ShowConfig(out=Path("x.png"), alpha=2.0), "alpha 2.0"),
    (lambda: OptimConfig(scale_range=(2.0, 1.0)), "LO <= HI"),
    (lambda: OptimConfig(warmup_fraction=0.6), "--warmup"),
    (lambda: InferConfig(checkpoint=Path("c.pt"), out=Path("o")), "either a dataset split"),
])
def test_configs_refuse_what_the_cli_no_longer_checks(build, message):
    with pytest.raises((OptionError, DgcnError), match=message):
        build()
