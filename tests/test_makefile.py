"""The photo pipelines' Makefile logic (`make -n`, nothing runs but the options stamps): a
finished pipeline is left alone, one given more seeds trains them instead of reprinting the old
report, and one given other options redoes the steps they change and what follows."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# what `make msrc MSRC_SEEDS=0 MSRC_EXPANDERS=graphcut MSRC_RETRAIN_FROM=graphcut` leaves,
# in the order it writes it
FINISHED = [
    "cam/cams_train.h5", "cam/cams_val.h5", "saliency_train.h5", "seeds_train.h5",
    "eval/cams_val.json", "eval/cams_train.json", "eval/seeds_train.json",
    "runs/graphcut-s0/train/final.pt", "runs/graphcut-s0/labels_train.h5", "runs/graphcut-s0/pred/pred.h5",
    "runs/graphcut-s0/eval/labels_train.json", "runs/graphcut-s0/eval/pred_val.json",
    "runs/retrain-graphcut-s0/final.pt", "runs/retrain-graphcut-s0/pred/pred.h5",
    "runs/retrain-graphcut-s0/eval/pseudo_train.json", "runs/retrain-graphcut-s0/eval/pred_val.json",
    "runs.list", "report.txt", "show_val.png", "curves.png",
]


def dry_run(out: Path, seeds: str, *options: str) -> str:
    venv = out / "venv"
    cmd = ["make", "-C", str(REPO), "--no-print-directory", "-n", "-o", f"{venv}/.installed", "msrc",
           f"VENV={venv}", f"MSRC_OUT={out}", f"MSRC_ROOT={out}/data", f"MSRC_SEEDS={seeds}",
           "MSRC_EXPANDERS=graphcut", "MSRC_RETRAIN_FROM=graphcut", "MSRC_SHOW_IDS=a", *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def finished(tmp_path):
    out = tmp_path / "msrc"
    for n, name in enumerate(FINISHED):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("graphcut-s0 retrain-graphcut-s0\n" if name == "runs.list" else "x")
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
    return out


def test_a_finished_pipeline_trains_nothing(finished):
    assert "/dgcn " not in dry_run(finished, "0")


def test_a_pipeline_given_another_seed_trains_it(finished):
    # every file of seed 0 is newer than its inputs; the new seed's files are missing
    plan = dry_run(finished, "0 1")
    trains = [line for line in plan.splitlines() if "/dgcn train " in line]
    assert len(trains) == 1 and "--seed 1" in trains[0] and "graphcut-s1" in trains[0]
    assert any("/dgcn retrain " in line and "retrain-graphcut-s1" in line for line in plan.splitlines())
    assert "graphcut-s0/train" not in trains[0]


def commands(plan: str, step: str) -> list[str]:
    return [line for line in plan.splitlines() if f"/dgcn {step} " in line]


def test_other_options_redo_their_step_and_what_follows(finished):
    # the first run records the options without disowning what was made before they were recorded
    assert commands(dry_run(finished, "0"), "train") == []
    assert (finished / ".opts" / "train").stat().st_mtime < 1_000_000
    assert commands(dry_run(finished, "0", "DEVICE=cpu", "PHOTO_SALIENCY_WORKERS=1"), "train") == []  # change no result
    plan = dry_run(finished, "0", "MSRC_RETRAIN_EPOCHS=8")
    assert len(commands(plan, "retrain")) == 1 and "--epochs 8" in commands(plan, "retrain")[0]
    assert commands(plan, "train") == [] and commands(plan, "cam") == []
    plan = dry_run(finished, "0", "MSRC_SEED_OPTS=--fg-thresh 0.4")
    assert len(commands(plan, "seeds")) == 1 and "--fg-thresh 0.4" in commands(plan, "seeds")[0]
    assert len(commands(plan, "train")) == 1 and len(commands(plan, "retrain")) == 1
    assert commands(plan, "cam") == [] and commands(plan, "saliency-bg") == []


# what `make demo` leaves (seed 0, graphcut), in the order it writes it
DEMO_FINISHED = [
    "data/demo.json", "cam/cams_train.h5", "cam/cams_val.h5", "saliency_train.h5", "seeds_train.h5",
    "graphcut-s0/train/final.pt", "graphcut-s0/labels_train.h5", "graphcut-s0/pred/pred.h5",
    "graphcut-s0/retrain/final.pt", "graphcut-s0/retrain-pred/pred.h5",
    "eval-shared/seeds_train.json", "eval-shared/cams_val.json", "graphcut-s0/eval/labels_train.json",
    "graphcut-s0/eval/pred_val.json", "graphcut-s0/eval/retrain_pred_val.json", "graphcut-s0/report.txt",
]


def demo_plan(out: Path, *options: str) -> str:
    venv = out / "venv"
    cmd = ["make", "-C", str(REPO), "--no-print-directory", "-n", "-o", f"{venv}/.installed", "demo",
           f"VENV={venv}", f"DEMO_OUT={out}", *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_redoes_what_its_options_change(tmp_path):
    out = tmp_path / "demo"
    for n, name in enumerate(DEMO_FINISHED):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
        os.utime(out / name, (1_000_000 + n, 1_000_000 + n))
    assert "/dgcn " not in demo_plan(out)
    plan = demo_plan(out, "DEMO_RETRAIN_EPOCHS=30")
    assert commands(plan, "train") == [] and "--epochs 30" in commands(plan, "retrain")[0]
    plan = demo_plan(out, "DEMO_EPOCHS=20")
    assert "--epochs 20" in commands(plan, "train")[0] and len(commands(plan, "retrain")) == 1
    assert commands(plan, "cam") == [] and commands(plan, "seeds") == []
    # another seed is another run folder: the first one's stamps are not touched
    assert len(commands(demo_plan(out, "SEED=1"), "train")) == 1
    assert (out / "graphcut-s0" / ".opts" / "train").read_text().count("--epochs 20") == 1
