"""HDF5 artifacts: round trip, fingerprints, validation, atomic writes and resume."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from stages.core.errors import ArtifactError, OutputExistsError
from stages.core.io.artifacts import (
    KINDS,
    SCHEMA_VERSION,
    ArtifactMeta,
    ArtifactReader,
    ArtifactWriter,
    partial_path,
)
from stages.core.version import __version__

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("background", "apple", "bell", "coin")


def meta(kind: str = "seeds", dataset: str = "demo", split: str = "train", classes=CLASSES, **kw) -> ArtifactMeta:
    return ArtifactMeta(kind=kind, dataset=dataset, split=split, class_names=classes, **kw)


def items(n: int = 5, seed: int = 0, prob: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Items of a seeds artifact, or with ``prob`` of a predictions one (its optional array)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        out[f"img_{i:03d}"] = {"label": rng.integers(0, 4, size=(20, 24)).astype(np.uint8)}
        if prob:
            out[f"img_{i:03d}"]["prob"] = rng.random((len(CLASSES), 20, 24)).astype(np.float16)
    return out


def write_artifact(path: Path, data: dict, m: ArtifactMeta | None = None, order=None) -> Path:
    with ArtifactWriter(path, m or meta()) as w:
        for image_id in order or data:
            w.write(image_id, **data[image_id])
        return w.finish()


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


# -- round trip -------------------------------------------------------------


def test_round_trip_arrays_and_root_attributes(tmp_path: Path, cache_dir: Path) -> None:
    data = items(4, prob=True)
    m = meta(
        kind="predictions",
        config={"cam_bg_thresh": 0.2, "paths": ["a", "b"]},
        inputs={"cams": "0123456789abcdef"},
        extra={"note": "x"},
    )
    path = tmp_path / "out" / "pred.h5"
    with ArtifactWriter(path, m) as w:
        for image_id, arrays in data.items():
            w.write(image_id, attrs={"height": 20}, **arrays)
        assert not path.exists(), "the final name must not exist before finish()"
        assert partial_path(path).exists()
        assert w.finish() == path
    assert path.exists() and not partial_path(path).exists()

    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["kind"] == "predictions"
        assert int(a["schema_version"]) == SCHEMA_VERSION
        assert a["toolkit_version"] == __version__
        assert a["dataset"] == "demo" and a["split"] == "train"
        assert json.loads(a["class_names"]) == list(CLASSES)
        assert json.loads(a["config"]) == {"cam_bg_thresh": 0.2, "paths": ["a", "b"]}
        assert json.loads(a["inputs"]) == {"cams": "0123456789abcdef"}
        assert int(a["count"]) == 4
        fp = str(a["fingerprint"])
        assert len(fp) == 16 and int(fp, 16) >= 0

    with ArtifactReader(path, kind="predictions", class_names=CLASSES) as r:
        assert r.ids == sorted(data)
        assert len(r) == 4 and "img_000" in r and "nope" not in r
        for image_id, arrays in data.items():
            got = r.arrays(image_id)
            assert set(got) == {"label", "prob"}
            assert got["label"].dtype == np.uint8 and got["prob"].dtype == np.float16
            np.testing.assert_array_equal(got["label"], arrays["label"])
            np.testing.assert_array_equal(got["prob"], arrays["prob"])
            np.testing.assert_array_equal(r.get(image_id, "label"), arrays["label"])
            assert r.attrs(image_id)["height"] == 20
        d = r.describe()
        assert d["kind"] == "predictions" and d["count"] == 4 and d["fingerprint"] == fp
        assert d["class_names"] == list(CLASSES) and d["inputs"] == {"cams": "0123456789abcdef"}
        assert d["config"]["cam_bg_thresh"] == 0.2 and d["extra"] == {"note": "x"}
        assert d["toolkit_version"] == __version__ and d["dataset"] == "demo" and d["split"] == "train"
        with pytest.raises(ArtifactError) as err:
            r.get("img_000", "cam")
        assert "cam" in one_line(err)
        assert [i for i, _ in r.iter_items()] == sorted(data)


def test_large_arrays_are_compressed(tmp_path: Path, cache_dir: Path) -> None:
    path = write_artifact(tmp_path / "s.h5", {"a": {"label": np.zeros((100, 100), np.uint8)}})
    with h5py.File(path, "r") as f:
        assert f["items/a/label"].compression == "gzip"


def test_unknown_kind_is_rejected_by_meta(cache_dir: Path) -> None:
    with pytest.raises(ValueError):
        meta(kind="bogus")


def test_write_after_finish_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    w = ArtifactWriter(tmp_path / "s.h5", meta())
    w.write("a", label=np.zeros((2, 2), np.uint8))
    w.finish()
    with pytest.raises(ArtifactError):
        w.write("b", label=np.zeros((2, 2), np.uint8))


# -- fingerprint --------------------------------------------------------------


def _fingerprint(path: Path) -> str:
    with ArtifactReader(path) as r:
        return r.fingerprint


def test_fingerprint_stable_for_equal_content(tmp_path: Path, cache_dir: Path) -> None:
    data = items(5)
    a = write_artifact(tmp_path / "a.h5", data)
    # the same content written in another order, with another config, gives the same fingerprint
    b = write_artifact(tmp_path / "b.h5", data, meta(config={"other": 1}), order=list(reversed(list(data))))
    assert _fingerprint(a) == _fingerprint(b) != ""


def test_fingerprint_changes_with_content(tmp_path: Path, cache_dir: Path) -> None:
    data = items(5)
    base = _fingerprint(write_artifact(tmp_path / "a.h5", data))

    changed = {k: dict(v) for k, v in data.items()}
    lab = changed["img_002"]["label"].copy()
    lab[0, 0] = (lab[0, 0] + 1) % 4
    changed["img_002"]["label"] = lab
    assert _fingerprint(write_artifact(tmp_path / "b.h5", changed)) != base

    fewer = {k: v for k, v in data.items() if k != "img_004"}
    assert _fingerprint(write_artifact(tmp_path / "c.h5", fewer)) != base

    renamed = {("x" + k): v for k, v in data.items()}
    assert _fingerprint(write_artifact(tmp_path / "d.h5", renamed)) != base

    with_prob = items(5, prob=True)
    without = {k: {"label": v["label"]} for k, v in with_prob.items()}
    assert (_fingerprint(write_artifact(tmp_path / "e.h5", with_prob, meta(kind="predictions")))
            != _fingerprint(write_artifact(tmp_path / "f.h5", without, meta(kind="predictions"))))


# -- reader rejections ----------------------------------------------------------


@pytest.fixture
def seeds_file(tmp_path: Path, cache_dir: Path) -> Path:
    return write_artifact(tmp_path / "seeds.h5", items(3))


def test_wrong_kind_names_expected_kind_and_command(tmp_path: Path, cache_dir: Path) -> None:
    path = write_artifact(tmp_path / "sal.h5", {"a": {"saliency": np.zeros((4, 4), np.float16)}}, meta(kind="saliency"))
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind="seeds")
    msg = one_line(err)
    assert "'saliency'" in msg and "'seeds'" in msg and KINDS["seeds"] in msg
    # several accepted kinds: the message lists them and names the first one's command
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind=("labels", "predictions"))
    msg = one_line(err)
    assert "'labels or predictions'" in msg and "dgcn graphcut-label" in msg
    # the right kind opens
    with ArtifactReader(path, kind=("cams", "saliency")) as r:
        assert r.kind == "saliency"


def test_wrong_schema_version(seeds_file: Path) -> None:
    with h5py.File(seeds_file, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 41
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(seeds_file, kind="seeds")
    msg = one_line(err)
    assert f"schema version {SCHEMA_VERSION + 41}" in msg and KINDS["seeds"] in msg


def test_class_list_mismatch(seeds_file: Path) -> None:
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(seeds_file, kind="seeds", class_names=("background", "apple", "bell", "drum"))
    msg = one_line(err)
    assert "classes" in msg and "--dataset" in msg
    with pytest.raises(ArtifactError):
        ArtifactReader(seeds_file, kind="seeds", class_names=CLASSES[:3])
    with ArtifactReader(seeds_file, kind="seeds", class_names=list(CLASSES)) as r:
        assert r.class_names == CLASSES


def test_truncated_file(seeds_file: Path) -> None:
    raw = seeds_file.read_bytes()
    seeds_file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(seeds_file, kind="seeds")
    assert str(seeds_file) in one_line(err)


def test_not_hdf5(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "seeds.h5"
    path.write_text("this is not an HDF5 file\n" * 20)
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind="seeds")
    assert "HDF5" in one_line(err)


def test_hdf5_without_dgcn_attributes(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path)
    assert "not a dgcn artifact" in one_line(err)


def test_missing_file_with_partial_says_resume(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "seeds.h5"
    w = ArtifactWriter(path, meta())
    w.write("a", label=np.zeros((4, 4), np.uint8))
    w.close()
    assert partial_path(path).exists() and not path.exists()
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind="seeds")
    assert "--resume" in one_line(err)


def test_missing_file_names_the_command(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(tmp_path / "cams.h5", kind="cams")
    msg = one_line(err)
    assert "not found" in msg and KINDS["cams"] in msg


def test_unfinished_file_under_final_name_is_rejected(tmp_path: Path, cache_dir: Path) -> None:
    """A partial copied to the final name (complete=False) must not read as finished."""
    path = tmp_path / "seeds.h5"
    w = ArtifactWriter(path, meta())
    w.write("a", label=np.zeros((4, 4), np.uint8))
    w.close()
    partial_path(path).rename(path)
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind="seeds")
    assert "incomplete" in one_line(err)


def test_require_ids(seeds_file: Path) -> None:
    with ArtifactReader(seeds_file) as r:
        r.require_ids(["img_000", "img_002"])
        with pytest.raises(ArtifactError) as err:
            r.require_ids(["img_000", "val_0009"])
        assert "val_0009" in one_line(err)


# -- writer: overwrite and resume -----------------------------------------------------


def test_writer_refuses_to_overwrite(seeds_file: Path) -> None:
    before = seeds_file.read_bytes()
    with pytest.raises(OutputExistsError) as err:
        ArtifactWriter(seeds_file, meta())
    assert "--overwrite" in one_line(err)
    assert seeds_file.read_bytes() == before

    new = {"only": {"label": np.full((3, 3), 2, np.uint8)}}
    with ArtifactWriter(seeds_file, meta(), overwrite=True) as w:
        w.write("only", **new["only"])
        w.finish()
    with ArtifactReader(seeds_file) as r:
        assert r.ids == ["only"]


def test_resume_on_finished_file_keeps_it(seeds_file: Path) -> None:
    before = seeds_file.read_bytes()
    with ArtifactWriter(seeds_file, meta(), resume=True) as w:
        assert w.finished
        assert w.done == {"img_000", "img_001", "img_002"}
        assert w.finish() == seeds_file
    assert seeds_file.read_bytes() == before


def test_resume_continues_an_interrupted_write(tmp_path: Path, cache_dir: Path) -> None:
    data = items(6)
    ids = list(data)
    path = tmp_path / "seeds.h5"
    w = ArtifactWriter(path, meta())
    for image_id in ids[:3]:
        w.write(image_id, **data[image_id])
    w.close()  # interrupted: no finish()
    assert not path.exists() and partial_path(path).exists()

    with ArtifactWriter(path, meta(), resume=True) as w:
        assert w.done == set(ids[:3])
        for image_id in ids:
            if image_id not in w.done:
                w.write(image_id, **data[image_id])
        w.finish()
    assert not partial_path(path).exists()
    with ArtifactReader(path, kind="seeds", class_names=CLASSES) as r:
        assert r.ids == ids and len(r) == 6
        for image_id in ids:
            np.testing.assert_array_equal(r.get(image_id, "label"), data[image_id]["label"])
        resumed_fp = r.fingerprint
    # a resumed run ends with the same file identity as an uninterrupted one
    assert resumed_fp == _fingerprint(write_artifact(tmp_path / "straight.h5", data))


def test_resume_drops_half_written_item(tmp_path: Path, cache_dir: Path) -> None:
    data = items(3)
    path = tmp_path / "seeds.h5"
    w = ArtifactWriter(path, meta())
    for image_id, arrays in data.items():
        w.write(image_id, **arrays)
    w.close()
    with h5py.File(partial_path(path), "a") as f:  # what a kill in the middle of write() leaves
        g = f["items"].create_group("img_half")
        g.create_dataset("label", data=np.zeros((20, 24), np.uint8))

    with ArtifactWriter(path, meta(), resume=True) as w:
        assert w.done == set(data)
        assert "img_half" not in w.done
        w.finish()
    with ArtifactReader(path) as r:
        assert r.ids == sorted(data)


@pytest.mark.parametrize(
    "other",
    [
        dict(dataset="voc"),
        dict(split="val"),
        dict(kind="labels"),
        dict(classes=("background", "apple")),
    ],
    ids=["dataset", "split", "kind", "classes"],
)
def test_resume_against_partial_of_another_run_fails(tmp_path: Path, cache_dir: Path, other: dict) -> None:
    path = tmp_path / "art.h5"
    w = ArtifactWriter(path, meta())
    w.write("a", label=np.zeros((4, 4), np.uint8))
    w.close()
    with pytest.raises(ArtifactError) as err:
        ArtifactWriter(path, meta(**other), resume=True)
    assert "--overwrite" in one_line(err)
    # the partial is left alone
    with h5py.File(partial_path(path), "r") as f:
        assert list(f["items"].keys()) == ["a"]


def test_resume_against_damaged_partial(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "art.h5"
    partial_path(path).write_bytes(b"garbage" * 100)
    with pytest.raises(ArtifactError) as err:
        ArtifactWriter(path, meta(), resume=True)
    assert "damaged" in one_line(err)


def test_killed_write_leaves_no_finished_looking_file(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "seeds.h5"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter
        m = ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names={list(CLASSES)!r})
        w = ArtifactWriter({str(path)!r}, m)
        for i in range(10):
            w.write(f"img_{{i:03d}}", label=np.full((32, 32), i % 4, np.uint8))
            if i == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        w.finish()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not path.exists()
    assert partial_path(path).exists()
    with pytest.raises(ArtifactError) as err:
        ArtifactReader(path, kind="seeds")
    assert "--resume" in one_line(err)

    # and the run can be continued from what was flushed before the kill
    with ArtifactWriter(path, meta(), resume=True) as w:
        assert w.done == {f"img_{i:03d}" for i in range(5)}
        for i in range(5, 10):
            w.write(f"img_{i:03d}", label=np.full((32, 32), i % 4, np.uint8))
        w.finish()
    with ArtifactReader(path, kind="seeds") as r:
        assert len(r) == 10
        assert int(r.get("img_006", "label")[0, 0]) == 2


def test_fill_reports_images_done_before_at_once(tmp_path: Path) -> None:
    """After --resume, the progress rate measures the images computed in this run: the images
    already done are reported in one update, not one by one at no cost."""
    from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter, fill

    meta = ArtifactMeta(kind="seeds", dataset="demo", split="train", class_names=["background", "a"])
    ids = [f"i{n}" for n in range(5)]
    label = {"label": np.zeros((4, 4), np.uint8)}
    with ArtifactWriter(tmp_path / "s.h5", meta) as w:
        for image_id in ids[:3]:
            w.write(image_id, **label)
    calls = []
    with ArtifactWriter(tmp_path / "s.h5", meta, resume=True) as w:
        fill(w, ids, lambda i: label, lambda done, total: calls.append(done))
    assert calls == [3, 4, 5]
