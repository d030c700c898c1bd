"""Every artifact and checkpoint records the environment it was made in (dgcn version and git
commit, Python, torch, CUDA, cuDNN, device), outside every fingerprint; ``inspect`` and
``evaluate --json`` show it, and files made before it was recorded still read."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from conftest import interrupted_training
from stages import train
from stages.core import provenance
from stages.core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, partial_path
from stages.core.io.checkpoint import describe_checkpoint, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def fresh_git_cache():
    provenance._git_state.cache_clear()
    yield
    provenance._git_state.cache_clear()


def _meta() -> ArtifactMeta:
    return ArtifactMeta(kind="seeds", dataset="demo", split="val", class_names=("background", "a", "b"),
                        config={"fg_thresh": 0.3})


def _write(path: Path, n: int = 3, **kw) -> Path:
    with ArtifactWriter(path, _meta(), **kw) as w:
        for i in range(n):
            w.write(f"img{i}", label=np.full((8, 8), i, np.uint8))
        return w.finish()


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return type(value) in (str, int, bool)  # not str subclasses: weights_only loading refuses them


def test_environment_names_versions_and_device() -> None:
    env = provenance.environment()
    assert env["dgcn"] and env["python"].count(".") == 2 and env["torch"] == str(torch.__version__)
    assert env["device"] == (torch.cuda.get_device_name() if torch.cuda.is_initialized() else provenance.cpu_name())
    assert provenance.environment("cpu")["device"] == provenance.cpu_name() != ""
    assert ("cuda" in env) == bool(torch.version.cuda)
    assert _plain(env)
    assert "hostname" not in env  # personal, and the device name says what matters


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_git_commit_of_dgcn_not_of_the_working_directory(tmp_path, monkeypatch, fresh_git_cache) -> None:
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.chdir(other)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    env = provenance.environment()
    assert env["git_commit"] == head and isinstance(env["git_dirty"], bool)


def test_no_git_no_commit_and_no_error(monkeypatch, fresh_git_cache) -> None:
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    env = provenance.environment()
    assert "git_commit" not in env and "git_dirty" not in env and env["dgcn"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_installed_inside_another_repository_records_no_commit(tmp_path, monkeypatch, fresh_git_cache) -> None:
    project = tmp_path / "project"
    (project / "venv" / "site-packages").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    monkeypatch.setattr(provenance, "_package_root", lambda: project / "venv" / "site-packages")
    assert "git_commit" not in provenance.environment()


def test_git_state_is_asked_once_per_process(monkeypatch, fresh_git_cache) -> None:
    calls = []
    real = provenance.subprocess.run

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(provenance.subprocess, "run", counting)
    provenance.environment()
    n = len(calls)
    provenance.environment()
    assert len(calls) == n


def test_artifact_records_environment_outside_its_fingerprints(tmp_path, monkeypatch) -> None:
    a = _write(tmp_path / "a.h5")
    monkeypatch.setattr(provenance, "environment", lambda device=None: {"dgcn": "9.9", "device": "elsewhere"})
    b = _write(tmp_path / "b.h5")
    with ArtifactReader(a) as ra, ArtifactReader(b) as rb:
        assert ra.environment["torch"] == str(torch.__version__)
        assert rb.environment == {"dgcn": "9.9", "device": "elsewhere"}
        assert ra.describe()["environment"] == ra.environment
        assert ra.fingerprint == rb.fingerprint
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert fa.attrs["config_fingerprint"] == fb.attrs["config_fingerprint"]


def test_artifact_fingerprints_are_what_they_were(tmp_path) -> None:
    # the values the code before environments were recorded gives: adding attributes changed neither
    with h5py.File(_write(tmp_path / "a.h5")) as f:
        assert (f.attrs["fingerprint"], f.attrs["config_fingerprint"]) == ("f8fdc29bbb631a21", "5bf0e177f3db223c")


def test_a_partial_resumed_elsewhere_keeps_the_earlier_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "s.h5"
    w = ArtifactWriter(path, _meta())
    w.write("img0", label=np.zeros((8, 8), np.uint8))
    w.close()  # interrupted
    first = json.loads(h5py.File(partial_path(path), "r").attrs["environment"])
    monkeypatch.setattr(provenance, "environment", lambda device=None: {"dgcn": "9.9", "device": "elsewhere"})
    with ArtifactWriter(path, _meta(), resume=True) as w:
        w.write("img1", label=np.ones((8, 8), np.uint8))
        w.finish()
    with ArtifactReader(path) as r:
        assert r.environment == {"dgcn": "9.9", "device": "elsewhere"}
        assert r.earlier_environments == [first]


def test_old_artifact_without_environment_reads_and_says_not_recorded(tmp_path, cache_dir) -> None:
    path = _write(tmp_path / "old.h5")
    with h5py.File(path, "a") as f:
        del f.attrs["environment"]
    with ArtifactReader(path) as r:
        assert r.environment is None and r.describe()["environment"] is None
    table = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "environment" in table.stdout and "not recorded" in table.stdout
    as_json = runner.invoke(app, ["inspect", "--json", "-", str(path)])
    assert json.loads(as_json.stdout)["environment"] is None


def test_inspect_artifact_prints_environment(tmp_path) -> None:
    path = _write(tmp_path / "s.h5")
    r = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert f"torch: {torch.__version__}" in r.stdout and f"device: {provenance.cpu_name()}" in r.stdout
    data = json.loads(runner.invoke(app, ["inspect", "--json", "-", str(path)]).stdout)
    assert data["environment"]["python"] == provenance.environment()["python"]


def test_checkpoint_records_environment_and_precision(trained_checkpoint) -> None:
    state = load_checkpoint(trained_checkpoint)
    assert state["precision"] == "fp32" and state["environment"]["device"] == provenance.cpu_name()
    assert "earlier_environments" not in state
    info = describe_checkpoint(trained_checkpoint)
    assert info["environment"] == state["environment"] and info["precision"] == "fp32"
    r = runner.invoke(app, ["inspect", str(trained_checkpoint)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "precision" in r.stdout and "fp32" in r.stdout
    assert f"torch: {torch.__version__}" in r.stdout and f"device: {provenance.cpu_name()}" in r.stdout
    data = json.loads(runner.invoke(app, ["inspect", "--json", "-", str(trained_checkpoint)]).stdout)
    assert data["environment"] == state["environment"]


def test_old_checkpoint_without_environment_says_not_recorded(tmp_path, trained_checkpoint) -> None:
    state = load_checkpoint(trained_checkpoint)
    for key in ("environment", "precision"):
        state.pop(key)
    old = tmp_path / "final.pt"
    save_checkpoint(old, state)
    r = runner.invoke(app, ["inspect", str(old)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert r.stdout.count("not recorded") == 2  # precision and environment
    brief = runner.invoke(app, ["inspect", "--brief", str(old), str(trained_checkpoint)])
    a, b = brief.stdout.split("\n")[:2]
    assert a.split()[-1] == b.split()[-1]  # the weights' fingerprint: the environment is not in it


def test_a_run_resumed_elsewhere_keeps_its_earlier_environment(tmp_path, make_train_config, monkeypatch) -> None:
    out = tmp_path / "run"
    interrupted_training(out, make_train_config)  # last.pt holds iteration 6
    first = load_checkpoint(out / "last.pt")["environment"]
    monkeypatch.setattr(provenance, "environment", lambda device=None: {"dgcn": "9.9", "device": "another GPU"})
    train.run(make_train_config(out, resume=True))  # the same run: its fingerprint has no environment
    state = load_checkpoint(out / "final.pt")
    assert state["environment"] == {"dgcn": "9.9", "device": "another GPU"}
    assert state["earlier_environments"] == [first]
    r = runner.invoke(app, ["inspect", str(out / "final.pt")], env={"COLUMNS": "200"})
    assert "before resume" in r.stdout


def test_evaluate_json_carries_both_environments(tmp_path, demo_root, cache_dir, monkeypatch) -> None:
    from stages.core.datasets import build_dataset

    ds = build_dataset("demo", demo_root, "val")
    meta = ArtifactMeta(kind="seeds", dataset=ds.name, split="val", class_names=ds.class_names)
    monkeypatch.setattr(provenance, "environment", lambda device=None: {"dgcn": "made", "device": str(device)})
    with ArtifactWriter(tmp_path / "seeds.h5", meta) as w:
        for image_id in ds.ids:
            w.write(image_id, label=ds.load_mask(image_id))
        w.finish()
    monkeypatch.setattr(provenance, "environment", lambda device=None: {"dgcn": "evaluating", "device": str(device)})
    out = tmp_path / "eval.json"
    r = runner.invoke(app, ["evaluate", str(tmp_path / "seeds.h5"), "--dataset", "demo", "--data-root", str(demo_root),
                            "--split", "val", "--json", str(out)], env={"DGCN_CACHE": str(cache_dir)})
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["environment"] == {"dgcn": "evaluating", "device": "cpu"}
    assert data["source_environment"] == {"dgcn": "made", "device": "None"}
    # a PNG folder records no environment of its own
    r = runner.invoke(app, ["evaluate", str(demo_root / "SegmentationClass"), "--dataset", "demo", "--data-root",
                            str(demo_root), "--split", "val", "--json", str(out)], env={"DGCN_CACHE": str(cache_dir)})
    assert r.exit_code == 0, r.output
    assert "source_environment" not in json.loads(out.read_text())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_name_in_environment() -> None:
    assert provenance.environment(torch.device("cuda", 0))["device"] == torch.cuda.get_device_name(0)
    torch.zeros(1, device="cuda")  # this process has used the GPU: the default is its name
    assert provenance.environment()["device"] == torch.cuda.get_device_name(torch.cuda.current_device())
