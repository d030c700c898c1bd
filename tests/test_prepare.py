"""``dgcn prepare voc`` / ``prepare coco``: small archives in the real layouts are unpacked into
what ``--dataset voc`` / ``--dataset coco`` read, with the train_aug arithmetic, the mask choice,
the checksum policy, the one-line refusals and resuming checked on known answers."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from dgcn_cli.app import app
from fixtures_coco_archives import COCO128, build_coco_archives
from fixtures_voc_archives import HORSE_VOC, SBD_TGZ_NAME, VOC_TAR_NAME, add_member, build_voc_archives
from stages import prepare
from stages.core.datasets import DataConfig
from stages.core.datasets import archives as arc
from stages.core.datasets import prepare_voc as pv
from stages.core.errors import DgcnError
from stages.core.maps import IGNORE

pytestmark = pytest.mark.skipif(
    not (HORSE_VOC / "JPEGImages").is_dir() or not (COCO128 / "train2017").is_dir(),
    reason="shared photo data (horse-voc, coco128-coco) not found",
)


def md5_pairs(*paths: Path) -> tuple[tuple[str, str], ...]:
    return tuple((p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in paths)


def voc_cfg(root: Path, built: dict, **kw) -> prepare.PrepareConfig:
    """The fixture's archives checked against their own MD5s (they are not the official files)."""
    kw.setdefault("md5", md5_pairs(built["voc_tar"], built["sbd_tgz"]))
    kw.setdefault("archives", built["archives"])
    return prepare.PrepareConfig(dataset="voc", root=root, **kw)


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and prepare.STAGING not in p.parts and p.name != prepare.RECORD
    }


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def sbd_segmentation(sbd_tgz: Path, image_id: str) -> np.ndarray:
    with tarfile.open(sbd_tgz) as tf:
        data = tf.extractfile(f"benchmark_RELEASE/dataset/cls/{image_id}.mat").read()
    return scipy.io.loadmat(io.BytesIO(data))["GTcls"]["Segmentation"].flat[0]


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.asarray(im, dtype=np.uint8)


@pytest.fixture(scope="module")
def voc_built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Archives (read-only by convention) and one uninterrupted prepare of them."""
    base = tmp_path_factory.mktemp("voc-prepare")
    built = build_voc_archives(base / "archives")
    result = prepare.run(voc_cfg(base / "root", built))
    return {**built, "result": result, "root": base / "root", "voc_dir": base / "root" / "VOCdevkit" / "VOC2012"}


@pytest.fixture
def archives_copy(voc_built: dict, tmp_path: Path) -> dict:
    """The fixture archives copied, for a test that damages or edits them."""
    folder = tmp_path / "archives"
    folder.mkdir()
    for key in ("voc_tar", "sbd_tgz"):
        shutil.copy2(voc_built[key], folder / voc_built[key].name)
    return {**voc_built, "archives": folder, "voc_tar": folder / VOC_TAR_NAME, "sbd_tgz": folder / SBD_TGZ_NAME}


# -- VOC: what is made ------------------------------------------------------------------------


def test_voc_counts_and_train_aug_are_the_known_answers(voc_built: dict) -> None:
    expected_aug = sorted(
        (set(voc_built["sbd_train"]) | set(voc_built["sbd_val"]) | set(voc_built["voc_train"])) - set(voc_built["voc_val"])
    )
    # 10 VOC train + 4 detection-only + 4 SBD-only; the 4 SBD ids in VOC val are left out.
    assert len(expected_aug) == 18
    assert set(voc_built["sbd_train"] + voc_built["sbd_val"]) & set(voc_built["voc_val"])
    lists = voc_built["voc_dir"] / "ImageSets" / "Segmentation"
    assert (lists / "train_aug.txt").read_text() == "".join(f"{i}\n" for i in expected_aug)
    assert voc_built["result"].details["counts"] == {"train": 10, "val": 8, "train_aug": 18}
    summary = voc_built["result"].summary
    assert "train 10, val 8, train_aug 18" in summary and "--data-root" in summary
    assert voc_built["result"].path == voc_built["voc_dir"]


def test_sbd_masks_are_converted_exactly_and_voc_masks_win_where_both_exist(voc_built: dict) -> None:
    voc_dir, aug = voc_built["voc_dir"], voc_built["voc_dir"] / "SegmentationClassAug"
    for image_id in voc_built["sbd_new"] + voc_built["detection_only"]:
        seg = sbd_segmentation(voc_built["sbd_tgz"], image_id)
        assert np.array_equal(png(aug / f"{image_id}.png"), seg)
    both = [i for i in voc_built["voc_train"] if i in voc_built["sbd_train"] + voc_built["sbd_val"]]
    assert both
    for image_id in both:
        kept = png(aug / f"{image_id}.png")
        assert (aug / f"{image_id}.png").read_bytes() == (voc_dir / "SegmentationClass" / f"{image_id}.png").read_bytes()
        if voc_built["photo"][image_id].startswith("horse"):  # a scene's mask is all background in both
            assert not np.array_equal(kept, sbd_segmentation(voc_built["sbd_tgz"], image_id))
    # every train_aug and val id has an Aug mask; the 255 band survives only from VOC's masks
    for image_id in voc_built["expected"]["train_aug"] + voc_built["expected"]["val"]:
        assert (aug / f"{image_id}.png").is_file()
    assert any((png(aug / f"{i}.png") == IGNORE).any() for i in both)


def test_sbd_only_images_are_added_and_instances_are_not_unpacked(voc_built: dict) -> None:
    images = voc_built["voc_dir"] / "JPEGImages"
    with tarfile.open(voc_built["sbd_tgz"]) as tf:
        for image_id in voc_built["sbd_new"]:
            sbd_bytes = tf.extractfile(f"benchmark_RELEASE/dataset/img/{image_id}.jpg").read()
            assert (images / f"{image_id}.jpg").read_bytes() == sbd_bytes
    assert not list(voc_built["root"].rglob("inst"))
    assert not list(voc_built["root"].rglob("*.partial"))
    # the work folder is gone; the tree remembers whether its archives were the official ones
    assert not (voc_built["root"] / prepare.STAGING).exists()
    record = json.loads((voc_built["voc_dir"] / prepare.RECORD).read_text())
    assert record["official"] == {VOC_TAR_NAME: False, SBD_TGZ_NAME: False}


def test_the_tree_opens_with_the_voc_dataset(voc_built: dict, cache_dir: Path) -> None:
    for split in ("train_aug", "val", "train"):
        ds = DataConfig(dataset="voc", data_root=voc_built["root"], split=split, cache_dir=cache_dir).build()
        assert ds.ids == voc_built["expected"][split]
        mask = ds.load_mask(ds.ids[-1])
        assert mask.shape == ds.load_image(ds.ids[-1]).shape[:2]
    horses = [i for i in ds.ids if voc_built["photo"][i].startswith("horse")]
    assert horses and all(ds.labels(i) == (13,) for i in horses)


def test_a_prepared_tree_is_only_checked(voc_built: dict, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in voc_built["root"].rglob("*") if p.is_file()}
    empty = tmp_path / "no-archives"
    empty.mkdir()
    for root in (voc_built["root"], voc_built["voc_dir"]):  # the holder of VOCdevkit, or VOC2012 itself
        result = prepare.run(prepare.PrepareConfig(dataset="voc", root=root, archives=empty))
        assert "already prepared: checked only" in result.summary
        assert result.details["counts"] == {"train": 10, "val": 8, "train_aug": 18}
    assert {p: p.stat().st_mtime_ns for p in voc_built["root"].rglob("*") if p.is_file()} == before


def test_an_existing_voc_tree_needs_only_the_sbd_archive(voc_built: dict, tmp_path: Path) -> None:
    own = tmp_path / "own"
    with tarfile.open(voc_built["voc_tar"]) as tf:
        tf.extractall(own, filter="data")
    folder = tmp_path / "archives"
    folder.mkdir()
    shutil.copy2(voc_built["sbd_tgz"], folder / SBD_TGZ_NAME)
    voc_dir = own / "VOCdevkit" / "VOC2012"
    result = prepare.run(prepare.PrepareConfig(dataset="voc", root=voc_dir, archives=folder,
                                               md5=md5_pairs(voc_built["sbd_tgz"])))
    assert result.path == voc_dir and result.details["counts"]["train_aug"] == 18
    assert tree_files(own) == tree_files(voc_built["root"])


# -- VOC: resuming ----------------------------------------------------------------------------


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, module, name: str, calls: int) -> None:
    real = getattr(module, name)
    seen = []

    def flaky(*args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise RuntimeError("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


@pytest.mark.parametrize("where", ["unpacking VOC", "unpacking SBD", "conversion"])
def test_interrupted_then_rerun_equals_an_uninterrupted_run(where: str, voc_built: dict, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.MonkeyPatch.context() as mp:
        if where.startswith("unpacking"):
            # the VOC tar holds 43 files, so 60 writes stop inside the SBD archive
            _interrupt_after(mp, arc, "_write_member", 20 if where.endswith("VOC") else 60)
        else:
            _interrupt_after(mp, pv, "convert_sbd_mask", 3)
        with pytest.raises(RuntimeError, match="simulated"):
            prepare.run(voc_cfg(root, voc_built))
    assert not (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").exists()
    assert not list(root.rglob("*.partial"))
    result = prepare.run(voc_cfg(root, voc_built))
    assert "prepared now" in result.summary
    assert tree_files(root) == tree_files(voc_built["root"])


# -- VOC: refusals ------------------------------------------------------------------------------


def test_missing_sbd_archive_is_named(voc_built: dict, tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    folder.mkdir()
    shutil.copy2(voc_built["voc_tar"], folder / VOC_TAR_NAME)
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "root", archives=folder, verify=False))
    message = one_line_error(excinfo)
    assert SBD_TGZ_NAME in message and "--download" in message and VOC_TAR_NAME not in message
    assert not (tmp_path / "root" / "VOCdevkit").exists()


def test_wrong_checksum_names_the_archive(voc_built: dict, tmp_path: Path) -> None:
    # By default the official MD5 applies, which the stand-in archives do not have.
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "a", archives=voc_built["archives"]))
    message = one_line_error(excinfo)
    assert VOC_TAR_NAME in message and "official MD5 6cd6e144f989b92b3379bac3b3de84fd" in message
    wrong = (("benchmark.tgz", "0" * 32),) + md5_pairs(voc_built["voc_tar"])
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(voc_cfg(tmp_path / "b", voc_built, md5=wrong))
    message = one_line_error(excinfo)
    assert SBD_TGZ_NAME in message and "--md5" in message and "0" * 32 in message


@pytest.mark.parametrize("which", ["sbd_tgz half", "voc_tar at a member boundary"])
def test_truncated_archive_is_refused(which: str, archives_copy: dict, tmp_path: Path) -> None:
    key = which.split()[0]
    path = archives_copy[key]
    data = path.read_bytes()
    if key == "sbd_tgz":
        cut = len(data) // 2
    else:
        with tarfile.open(path) as tf:
            members = tf.getmembers()
        cut = members[len(members) // 2].offset
    path.write_bytes(data[:cut])
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "root", archives=archives_copy["archives"], verify=False))
    message = one_line_error(excinfo)
    assert path.name in message and "truncated" in message


def test_an_id_without_its_image_is_refused(tmp_path: Path) -> None:
    built = build_voc_archives(tmp_path / "archives", n_voc_train=4, n_voc_val=4, n_sbd=8, missing_sbd_images=5)
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(voc_cfg(tmp_path / "root", built))
    message = one_line_error(excinfo)
    first = built["missing_images"][0]
    assert "5 of the" in message and "train_aug.txt" in message and f"JPEGImages/{first}.jpg" in message
    assert "and 2 more" in message
    voc_dir = tmp_path / "root" / "VOCdevkit" / "VOC2012"
    assert not (voc_dir / "ImageSets" / "Segmentation" / "train_aug.txt").exists()


def test_a_prepared_tree_that_lost_an_image_is_refused(voc_built: dict, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(voc_built["root"], root)
    gone = voc_built["expected"]["val"][2]
    (root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{gone}.jpg").unlink()
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=root))
    message = one_line_error(excinfo)
    assert f"JPEGImages/{gone}.jpg" in message and "1 of the 8 ids" in message and "val.txt" in message


@pytest.mark.parametrize("name", ["VOCdevkit/VOC2012/../../../escaped.txt", "/tmp/dgcn-escaped.txt"])
def test_tar_member_outside_the_destination_is_refused(name: str, archives_copy: dict, tmp_path: Path) -> None:
    add_member(archives_copy["voc_tar"], name, b"should never be written")
    root = tmp_path / "deep" / "er" / "root"
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=root, archives=archives_copy["archives"], verify=False))
    message = one_line_error(excinfo)
    assert "outside the destination" in message and repr(name) in message
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/dgcn-escaped.txt").exists()


def test_official_archives_also_require_the_official_counts(voc_built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the stand-ins "official" by giving their MD5s as the published ones.
    (_, voc_md5), (_, sbd_md5) = md5_pairs(voc_built["voc_tar"], voc_built["sbd_tgz"])
    monkeypatch.setattr(pv, "VOC_TAR", dataclasses.replace(pv.VOC_TAR, md5=voc_md5))
    monkeypatch.setattr(pv, "SBD_TGZ", dataclasses.replace(pv.SBD_TGZ, md5=sbd_md5))
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "a", archives=voc_built["archives"]))
    message = one_line_error(excinfo)
    assert "train 1464, val 1449, train_aug 10582" in message and "train_aug 18 (official 10582)" in message
    monkeypatch.setattr(pv, "OFFICIAL_COUNTS", {"train": 10, "val": 8, "train_aug": 18})
    result = prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "b", archives=voc_built["archives"]))
    assert result.details["official"] and "official (MD5 matched)" in result.summary
    again = prepare.run(prepare.PrepareConfig(dataset="voc", root=result.path, archives=tmp_path / "gone"))
    assert again.details["official"] and "checked only" in again.summary


def test_download_fetches_the_official_urls_with_torchvision(voc_built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tvu

    asked = []

    def fake_download(url, root, filename=None, md5=None):
        asked.append(url)
        shutil.copyfile(voc_built["archives"] / url.rsplit("/", 1)[1], Path(root) / filename)

    monkeypatch.setattr(tvu, "download_url", fake_download)
    folder = tmp_path / "downloads"
    result = prepare.run(voc_cfg(tmp_path / "root", voc_built, download=True, archives=folder))
    assert asked == [pv.VOC_TAR.url, pv.SBD_TGZ.url]
    assert sorted(p.name for p in folder.iterdir()) == sorted([SBD_TGZ_NAME, VOC_TAR_NAME])
    assert result.details["counts"]["train_aug"] == 18


def test_a_failed_download_is_one_line_and_leaves_no_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision.datasets.utils as tvu

    def offline(url, root, filename=None, md5=None):
        (Path(root) / filename).write_bytes(b"half a file")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tvu, "download_url", offline)
    folder = tmp_path / "downloads"
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="voc", root=tmp_path / "root", archives=folder, download=True))
    message = one_line_error(excinfo)
    assert f"cannot download {pv.VOC_TAR.url}" in message and "Name or service not known" in message
    assert list(folder.iterdir()) == []


def test_urls_and_md5s_are_torchvisions() -> None:
    from torchvision.datasets import SBDataset
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    voc = DATASET_YEAR_DICT["2012"]
    assert (pv.VOC_TAR.url, pv.VOC_TAR.name, pv.VOC_TAR.md5) == (voc["url"], voc["filename"], voc["md5"])
    assert (pv.SBD_TGZ.url, pv.SBD_TGZ.name, pv.SBD_TGZ.md5) == (SBDataset.url, SBDataset.filename, SBDataset.md5)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "ade20k"}, "not 'ade20k'"),
    ({"md5": (("foo.tar", "0" * 32),)}, "voc archives are"),
    ({"md5": ((VOC_TAR_NAME, "xyz"),)}, "32 hexadecimal"),
    ({"md5": ((VOC_TAR_NAME, "0" * 32),), "verify": False}, "contradict"),
    ({"cache_masks": True}, "for COCO"),
])
def test_config_refuses_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(DgcnError, match=message):
        prepare.PrepareConfig(**{"dataset": "voc", "root": Path("x"), **kwargs})


# -- COCO --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_coco_archives(tmp_path_factory.mktemp("coco-archives"))


def test_coco_is_unpacked_checked_and_opens(coco_built: dict, tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "coco"
    result = prepare.run(prepare.PrepareConfig(dataset="coco", root=root, archives=coco_built["archives"]))
    assert result.details["counts"] == coco_built["counts"] == {"train2014": 12, "val2014": 6}
    assert "val2014 6 images" in result.summary and "first use" in result.summary
    assert any("82783" in w for w in result.warnings)
    assert sorted(p.name for p in (root / "annotations").iterdir()) == ["instances_train2014.json", "instances_val2014.json"]
    assert not (root / prepare.STAGING).exists()
    for split in ("train2014", "val2014"):
        ds = DataConfig(dataset="coco", data_root=root, split=split, cache_dir=cache_dir).build()
        assert len(ds.ids) == coco_built["labelled" if split.startswith("train") else "counts"][split]
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(coco_built["file_names"][split])
    again = prepare.run(prepare.PrepareConfig(dataset="coco", root=root, archives=tmp_path / "nothing-here"))
    assert "already prepared: checked only" in again.summary


def test_coco_cache_masks_builds_the_dataset_cache(coco_built: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = prepare.run(prepare.PrepareConfig(dataset="coco", root=tmp_path / "coco", archives=coco_built["archives"],
                                               cache_masks=True, cache_dir=cache))
    assert "rasterised into" in result.summary
    for split in ("train2014", "val2014"):
        ds = DataConfig(dataset="coco", data_root=tmp_path / "coco", split=split, cache_dir=cache).build()
        assert len(list(ds.mask_cache_dir().glob("*.png"))) == len(ds.ids)


def test_coco_listed_image_missing_is_refused(tmp_path: Path) -> None:
    built = build_coco_archives(tmp_path / "archives", n_train=4, n_val=6, drop_from_val=4)
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="coco", root=tmp_path / "coco", archives=built["archives"]))
    message = one_line_error(excinfo)
    assert "4 of the 6 images listed in" in message and "instances_val2014.json" in message and "and 1 more" in message


def test_coco_interrupted_then_rerun_equals_an_uninterrupted_run(coco_built: dict, tmp_path: Path) -> None:
    cfg = prepare.PrepareConfig(dataset="coco", root=tmp_path / "a", archives=coco_built["archives"])
    with pytest.MonkeyPatch.context() as mp:
        _interrupt_after(mp, arc, "_write_member", 15)  # inside val2014.zip (train2014 has 12 images)
        with pytest.raises(RuntimeError, match="simulated"):
            prepare.run(cfg)
    assert (tmp_path / "a" / "train2014").is_dir() and not (tmp_path / "a" / "val2014").exists()
    prepare.run(cfg)
    prepare.run(dataclasses.replace(cfg, root=tmp_path / "b"))
    assert tree_files(tmp_path / "a") == tree_files(tmp_path / "b")
    assert not (tmp_path / "a" / prepare.STAGING).exists()


@pytest.mark.parametrize("damage", ["truncated", "bad crc"])
def test_coco_damaged_zip_is_refused(damage: str, coco_built: dict, tmp_path: Path) -> None:
    folder = tmp_path / "archives"
    shutil.copytree(coco_built["archives"], folder)
    path = folder / "val2014.zip"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2] ^= 0xFF  # inside a stored JPEG: only its CRC-32 can tell
    path.write_bytes(bytes(data))
    with pytest.raises(DgcnError) as excinfo:
        prepare.run(prepare.PrepareConfig(dataset="coco", root=tmp_path / "coco", archives=folder))
    message = one_line_error(excinfo)
    assert "val2014.zip" in message and "damaged or truncated" in message
    assert not (tmp_path / "coco" / "val2014").exists()


# -- CLI ---------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_prepare_voc_and_its_one_line_error(voc_built: dict, tmp_path: Path, cache_dir: Path) -> None:
    md5 = [f"--md5={name}={value}" for name, value in md5_pairs(voc_built["voc_tar"], voc_built["sbd_tgz"])]
    args = ["prepare", "voc", "--root", str(tmp_path / "voc"), "--archives", str(voc_built["archives"]), *md5]
    r = runner.invoke(app, args, env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "train 10, val 8, train_aug 18" in r.stdout
    r = runner.invoke(app, ["prepare", "voc", "--root", str(tmp_path / "other"), "--archives", str(tmp_path / "none")],
                      env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "200"})
    assert r.exit_code == 2
    assert "error: not found in" in r.output and VOC_TAR_NAME in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["prepare", "voc", "--root", "x", "--md5", "no-equals-sign"])
    assert r.exit_code == 2 and "NAME=HEX" in r.output


def test_cli_prepare_coco(coco_built: dict, tmp_path: Path, cache_dir: Path) -> None:
    args = ["prepare", "coco", "--root", str(tmp_path / "coco"), "--archives", str(coco_built["archives"])]
    r = runner.invoke(app, args, env={"DGCN_CACHE": str(cache_dir), "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "train2014 12 images" in r.stdout and "warning:" in r.output


def test_cli_interrupt_says_to_run_the_same_command_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(cfg, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "run", interrupted)
    r = runner.invoke(app, ["prepare", "voc", "--root", str(tmp_path)])
    assert r.exit_code == 130 and "run the same command again" in r.output and "--resume" not in r.output


def test_a_mismatch_is_not_remembered(tmp_path: Path) -> None:
    """A damaged copy replaced by a good one of the same size and time (`cp -p`) is hashed again."""
    import os

    from stages.core.datasets import archives as arc

    path, memo = tmp_path / "a.tgz", tmp_path / "memo.json"
    path.write_bytes(b"damaged!")
    stat = path.stat()
    good = arc.hashlib.md5(b"good one").hexdigest()
    with pytest.raises(DgcnError, match="MD5"):
        arc.verify(path, good, "official MD5", memo)
    path.write_bytes(b"good one")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time
    arc.verify(path, good, "official MD5", memo)  # not refused from a remembered mismatch
    assert json.loads(memo.read_text())[str(path.resolve())]["md5"] == good
