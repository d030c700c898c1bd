"""A disk that fills while a stage writes ends in one line naming the file and the space it
needs, before HDF5 or torch.save meet the full disk; the ``.partial`` (or the previous
checkpoint) stays, and ``--resume`` finishes the same file once space is freed.

The disk is simulated: writers look the free space up through ``files.free_space``, which
these tests replace."""
from __future__ import annotations

import errno
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgcn_cli.app import app
from stages import train
from stages.core.errors import DiskFullError
from stages.core.io import checkpoint as checkpoint_mod
from stages.core.io import files
from stages.core.io.artifacts import ArtifactMeta, ArtifactReader, ArtifactWriter, fill, partial_path
from stages.core.io.checkpoint import load_checkpoint, save_checkpoint, weights_fingerprint

runner = CliRunner()
PLENTY = 10**12


def filling_disk(items_that_fit: int):
    """A free-space function with room for ``items_that_fit`` checks, then 1 kB."""
    calls = [0]

    def free_space(folder: Path) -> int:
        calls[0] += 1
        return PLENTY if calls[0] <= items_that_fit else 1000

    return free_space


def _meta() -> ArtifactMeta:
    return ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names=("background", "a", "b"))


def _label(image_id: str) -> dict:
    rng = np.random.default_rng(int(image_id[3:]))
    return {"label": rng.integers(0, 3, (32, 32)).astype(np.uint8)}


IDS = [f"img{i}" for i in range(10)]


def _fingerprint(path: Path) -> str:
    with ArtifactReader(path) as r:
        return r.fingerprint


def test_artifact_stops_before_the_disk_fills_and_resumes(tmp_path, monkeypatch) -> None:
    whole = tmp_path / "whole.h5"
    with ArtifactWriter(whole, _meta()) as w:
        fill(w, IDS, _label)
    path = tmp_path / "seeds.h5"
    monkeypatch.setattr(files, "free_space", filling_disk(4))
    with pytest.raises(DiskFullError) as err, ArtifactWriter(path, _meta(), expected=len(IDS)) as w:
        fill(w, IDS, _label)
    message = str(err.value)
    assert "\n" not in message and str(partial_path(path)) in message
    assert "needs about" in message and "6 images left" in message and "1.0 kB free" in message
    assert "--resume" in message and "4 images done are kept" in message
    assert not path.exists()
    with h5py.File(partial_path(path), "r") as f:
        assert sum(bool(g.attrs.get("complete")) for g in f["items"].values()) == 4
    monkeypatch.setattr(files, "free_space", lambda folder: PLENTY)  # space freed
    with ArtifactWriter(path, _meta(), resume=True) as w:
        fill(w, IDS, _label)
    assert _fingerprint(path) == _fingerprint(whole)


def test_hdf5_meeting_a_full_disk_is_the_same_line(tmp_path, monkeypatch) -> None:
    # another process filled the disk between the check and the write: h5py's error becomes the line
    path = tmp_path / "seeds.h5"
    real = h5py.Group.create_dataset
    written = [0]

    def enospc_after_three(self, name, *args, **kwargs):
        if written[0] >= 3:
            raise OSError("Can't write data (file write failed: time = Mon, filename = 'x', file descriptor = 5, "
                          "errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 9)")
        written[0] += 1
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", enospc_after_three)
    with pytest.raises(DiskFullError, match=r"^disk full: .*seeds\.h5\.partial .*--resume"), \
            ArtifactWriter(path, _meta(), expected=len(IDS)) as w:
        fill(w, IDS, _label)
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    with ArtifactWriter(path, _meta(), resume=True) as w:
        assert w.done == {"img0", "img1", "img2"}  # the half-written fourth item is dropped
        fill(w, IDS, _label)
    with ArtifactReader(path) as r:
        assert r.ids == sorted(IDS)


def test_cli_full_disk_is_one_line_and_resume_finishes_the_same_file(demo_root, tmp_path, cache_dir, monkeypatch) -> None:
    def saliency(out: Path, *extra: str):
        return runner.invoke(app, ["saliency-bg", "--out", str(out), "--dataset", "demo", "--data-root", str(demo_root),
                                   "--split", "train", *extra], env={"DGCN_CACHE": str(cache_dir)})

    whole = tmp_path / "whole.h5"
    assert saliency(whole).exit_code == 0
    out = tmp_path / "sal.h5"
    monkeypatch.setattr(files, "free_space", filling_disk(5))
    r = saliency(out)
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output
    assert f"disk full: {partial_path(out)}" in errors[0] and "7 images left" in errors[0], errors[0]
    monkeypatch.setattr(files, "free_space", lambda folder: PLENTY)
    again = saliency(out, "--resume")
    assert again.exit_code == 0, again.output
    assert _fingerprint(out) == _fingerprint(whole)


# ------------------------------------------------------------------ checkpoints


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((1000,), value)}, "model_config": {}}


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    monkeypatch.setattr(files, "free_space", lambda folder: 1000)
    with pytest.raises(DiskFullError) as err:
        save_checkpoint(path, _state(2.0))
    message = str(err.value)
    assert "\n" not in message and f"saving {path} needs about" in message and "keeps the previous checkpoint" in message
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((1000,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"),  # torch's words, no errno
])
def test_checkpoint_write_failing_on_a_full_disk_is_the_same_line(tmp_path, monkeypatch, failure) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    monkeypatch.setattr(files, "free_space", filling_disk(1))  # room at the check, none once the write failed

    def torch_save_fails(obj, f):
        Path(f).write_bytes(b"half")
        raise failure

    monkeypatch.setattr(checkpoint_mod.torch, "save", torch_save_fails)
    with pytest.raises(DiskFullError, match="keeps the previous checkpoint"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((1000,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_other_checkpoint_write_errors_pass_through(tmp_path, monkeypatch) -> None:
    def torch_save_fails(obj, f):
        raise RuntimeError("something else")

    monkeypatch.setattr(checkpoint_mod.torch, "save", torch_save_fails)
    with pytest.raises(RuntimeError, match="something else"):
        save_checkpoint(tmp_path / "x.pt", _state(1.0))


def test_training_on_a_filling_disk_stops_in_one_line_and_resumes(tmp_path, make_train_config, monkeypatch) -> None:
    whole = train.run(make_train_config(tmp_path / "whole")).path
    out = tmp_path / "run"
    # last.pt at iterations 2 and 4 (the epoch's end) fit; the one at 6 does not
    monkeypatch.setattr(files, "free_space", filling_disk(2))
    with pytest.raises(DiskFullError, match=f"saving {out / 'last.pt'}"):
        train.run(make_train_config(out))
    assert load_checkpoint(out / "last.pt")["iteration"] == 4
    last = (out / "train.log").read_text().splitlines()[-1]
    assert "stopped at iteration 6: disk full" in last and "continues from last.pt at iteration 4" in last
    monkeypatch.setattr(files, "free_space", lambda folder: PLENTY)
    final = load_checkpoint(train.run(make_train_config(out, resume=True)).path)
    assert weights_fingerprint(final["model"]) == weights_fingerprint(load_checkpoint(whole)["model"])
