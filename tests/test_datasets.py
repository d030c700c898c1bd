"""Datasets: the demo generator, the VOC loader, label files, the folder dataset, WeakDataset."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from stages.core.config import to_jsonable
from stages.core.datasets import DataConfig
from stages.core.datasets import DATASETS, SegDataset, WeakDataset, build_dataset, labels_to_vector
from stages.core.datasets.base import default_cache_dir
from stages.core.datasets.demo import DEMO_CLASSES, DemoConfig, ensure_demo_dataset, render_image, write_demo_dataset
from stages.core.datasets.voc import VOC_CLASSES
from stages.core.errors import DatasetError
from stages.core.io.images import read_image, read_mask, voc_palette, write_palette_png


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
    return msg


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_jpeg(path: Path, colour=(120, 40, 200), size=(16, 12)) -> None:
    Image.new("RGB", size, colour).save(path, quality=95)


def make_voc_tree(root: Path, ids: list[str], *, images: dict[str, Path] | None = None,
                  masks: dict[str, Path] | None = None, split: str = "train") -> Path:
    """A VOC2012-like folder: JPEGImages/ (symlinks or tiny JPEGs), ImageSets/Segmentation/<split>.txt,
    and SegmentationClass/ only when masks are given."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in ids:
        dst = root / "JPEGImages" / f"{i}.jpg"
        if images:
            dst.symlink_to(images[i])
        else:
            tiny_jpeg(dst)
    if masks is not None:
        (root / "SegmentationClass").mkdir()
        for i in ids:
            (root / "SegmentationClass" / f"{i}.png").symlink_to(masks[i])
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


# -- registry / small helpers ------------------------------------------------------


def test_registry_holds_the_datasets() -> None:
    assert {"voc", "demo", "folder"} <= set(DATASETS.names())
    with pytest.raises(ValueError) as err:
        build_dataset("no-such-dataset", None, "train")
    assert "voc" in str(err.value) and "demo" in str(err.value)


def test_default_cache_dir_follows_env(cache_dir: Path) -> None:
    assert default_cache_dir() == cache_dir


def test_labels_to_vector() -> None:
    np.testing.assert_array_equal(labels_to_vector((1, 3), 5), np.array([1, 0, 1, 0], np.float32))
    assert labels_to_vector((), 21).shape == (20,) and labels_to_vector((), 21).sum() == 0


def test_to_jsonable_config() -> None:
    cfg = DataConfig(dataset="voc", data_root=Path("/x/VOC2012"), split="val")
    assert to_jsonable(cfg) == {
        "dataset": "voc", "data_root": "/x/VOC2012", "split": "val", "labels_file": None, "cache_dir": None,
    }
    assert json.dumps(to_jsonable({"a": (Path("p"), 1)})) == '{"a": ["p", 1]}'


# -- images --------------------------------------------------------------------------


def test_read_image_and_mask(tmp_path: Path) -> None:
    Image.new("L", (5, 4), 77).save(tmp_path / "grey.png")
    img = read_image(tmp_path / "grey.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and (img == 77).all()

    label = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    write_palette_png(tmp_path / "m.png", label)
    assert not (tmp_path / "m.png.partial").exists()
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        assert tuple(im.getpalette()[3:6]) == tuple(voc_palette()[1])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), label)

    Image.new("RGB", (3, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError) as err:
        read_mask(tmp_path / "rgb.png")
    assert "RGB" in one_line(err)
    with pytest.raises(DatasetError):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError) as err:
        read_image(tmp_path / "bad.jpg")
    assert "bad.jpg" in one_line(err)


def test_a_16_bit_mask_whose_values_do_not_fit_8_bits_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    wide = np.array([[0, 1, 258], [2, 255, 0]], np.uint16)  # 258 would wrap to class 2
    Image.fromarray(wide).save(tmp_path / "wide.png")
    with Image.open(tmp_path / "wide.png") as im:
        assert im.mode == "I;16"  # what the test is about: a real 16-bit PNG
    with pytest.raises(DatasetError) as err:
        read_mask(tmp_path / "wide.png")
    msg = one_line(err)
    assert "wide.png" in msg and "258" in msg and "16-bit" in msg
    # a 16-bit PNG whose values are class ids reads as they are
    Image.fromarray(np.array([[0, 1, 20], [2, 255, 0]], np.uint16)).save(tmp_path / "ok.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ok.png"), [[0, 1, 20], [2, 255, 0]])
    # through a dataset: the labels derived from it fail on the same line, naming the file
    root = make_voc_tree(tmp_path / "voc", ["a"], masks={"a": tmp_path / "wide.png"})
    ds = build_dataset("voc", root, "train", cache_dir=cache_dir)
    with pytest.raises(DatasetError, match="258"):
        ds.labels("a")


def _exif_jpeg(path: Path, array: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    Image.fromarray(array).save(path, quality=95, exif=exif.tobytes())


def test_read_image_applies_the_exif_orientation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, size=(40, 100, 3), dtype=np.uint8)
    _exif_jpeg(tmp_path / "phone.jpg", stored, 6)  # 6: the camera was turned, show it rotated 90 degrees clockwise
    raw = read_image(tmp_path / "phone.jpg", exif=False)
    upright = read_image(tmp_path / "phone.jpg")
    assert raw.shape == (40, 100, 3) and upright.shape == (100, 40, 3)
    np.testing.assert_array_equal(upright, np.rot90(raw, k=-1))
    # without a tag (VOC's JPEGs) nothing changes
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)
    np.testing.assert_array_equal(read_image(tmp_path / "plain.jpg"), read_image(tmp_path / "plain.jpg", exif=False))


def test_datasets_read_images_as_their_annotations_were_made(tmp_path: Path, cache_dir: Path) -> None:
    from stages.core.datasets.coco import CocoDataset

    root = make_folder(tmp_path / "mine")
    _exif_jpeg(root / "images" / "cat1.jpg", np.zeros((12, 16, 3), np.uint8), 6)
    ds = build_dataset("folder", root, "train", cache_dir=cache_dir)
    assert ds.load_image("cat1").shape == (16, 12, 3)  # a user's photo: upright, as the labelling tool showed it
    assert ds.weak().load_image("cat1").shape == (16, 12, 3)  # training reads the same pixels
    # COCO's masks are rasterised at the annotation file's height x width: the stored grid
    assert CocoDataset.exif is False and ds.exif is True


def test_voc_palette_known_colours() -> None:
    pal = voc_palette()
    assert pal.shape == (256, 3)
    assert tuple(pal[0]) == (0, 0, 0)
    assert tuple(pal[1]) == (128, 0, 0)
    assert tuple(pal[15]) == (192, 128, 128)  # person
    assert tuple(pal[255]) == (224, 224, 192)


# -- demo ------------------------------------------------------------------------------


def test_demo_is_deterministic(tmp_path: Path) -> None:
    cfg = DemoConfig(seed=3, n_train=3, n_val=2, size=64)
    a = all_files(write_demo_dataset(tmp_path / "a", cfg))
    b = all_files(write_demo_dataset(tmp_path / "b", cfg))
    assert any(k.endswith(".jpg") for k in a) and any(k.endswith(".png") for k in a)
    assert a == b  # byte-identical JPEGs, PNGs and lists
    c = all_files(write_demo_dataset(tmp_path / "c", dataclasses.replace(cfg, seed=4)))
    assert set(c) == set(a)
    assert [k for k in a if k.endswith((".jpg", ".png")) and a[k] != c[k]], "another seed must change the images"


def test_demo_layout(demo_root: Path) -> None:
    seg = demo_root / "ImageSets" / "Segmentation"
    train = seg.joinpath("train.txt").read_text().split()
    val = seg.joinpath("val.txt").read_text().split()
    assert len(train) == 12 and len(val) == 6
    assert seg.joinpath("trainval.txt").read_text().split() == train + val
    assert (demo_root / "classes.txt").read_text().split() == list(DEMO_CLASSES)
    meta = json.loads((demo_root / "demo.json").read_text())
    assert meta["n_train"] == 12 and meta["size"] == 64
    assert not list(demo_root.parent.glob("*.partial"))
    img = read_image(demo_root / "JPEGImages" / f"{train[0]}.jpg")
    assert img.shape == (64, 64, 3)


def test_demo_labels_equal_mask_classes(demo_root: Path, cache_dir: Path) -> None:
    for split, n in (("train", 12), ("val", 6), ("trainval", 18)):
        ds = build_dataset("demo", demo_root, split, cache_dir=cache_dir)
        assert ds.name == "demo" and ds.class_names == DEMO_CLASSES and len(ds) == n
        assert ds.has_masks()
        for image_id in ds.ids:
            mask = ds.load_mask(image_id)
            assert mask.shape == (64, 64) and mask.max() < len(DEMO_CLASSES)
            expected = tuple(int(c) for c in np.unique(mask) if c != 0)
            assert ds.labels(image_id) == expected
            assert len(expected) >= 1
            np.testing.assert_array_equal(
                ds.label_vector(image_id), labels_to_vector(expected, len(DEMO_CLASSES))
            )


def test_demo_generator_has_multi_class_and_split_instances() -> None:
    rng = np.random.default_rng(2024)
    cfg = DemoConfig()
    multi_class = two_components = 0
    for _ in range(50):
        img, mask = render_image(rng, cfg)
        assert img.shape == (cfg.size, cfg.size, 3) and img.dtype == np.uint8 and mask.dtype == np.uint8
        classes = [int(c) for c in np.unique(mask) if c != 0]
        assert classes and max(classes) < len(DEMO_CLASSES)
        multi_class += len(classes) >= 2
        two_components += any(ndimage.label(mask == c)[1] >= 2 for c in classes)
    assert multi_class >= 5, multi_class
    assert two_components >= 5, two_components


def test_ensure_demo_dataset_caches(cache_dir: Path) -> None:
    small = DemoConfig(n_train=2, n_val=1, size=64)
    root = ensure_demo_dataset(cache_dir, small)
    assert root.is_relative_to(cache_dir) and (root / "demo.json").is_file()
    stamp = (root / "demo.json").stat().st_mtime_ns
    assert ensure_demo_dataset(cache_dir, small) == root
    assert (root / "demo.json").stat().st_mtime_ns == stamp, "a cached demo dataset must not be rewritten"


def test_demo_rejects_foreign_folder(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DatasetError) as err:
        build_dataset("demo", tmp_path, "train", cache_dir=cache_dir)
    assert "demo-data" in one_line(err)
    with pytest.raises(DatasetError) as err:
        build_dataset("demo", tmp_path / "new", "train", cache_dir=cache_dir)
    assert f"dgcn demo-data --out {tmp_path / 'new'}" in one_line(err)


def test_forgotten_dataset_option_names_the_layout_found(tmp_path: Path, cache_dir: Path) -> None:
    """--dataset defaults to demo: a --data-root in another dataset's layout says which to pass,
    not how to write a demo dataset there."""
    voc = make_voc_tree(tmp_path / "VOCdevkit" / "VOC2012", ["a"])
    for root in (voc, tmp_path / "VOCdevkit", tmp_path):
        with pytest.raises(DatasetError) as err:
            build_dataset("demo", root, "train", cache_dir=cache_dir)
        msg = one_line(err)
        assert "this looks like a VOC dataset: pass --dataset voc" in msg and "demo-data" not in msg
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_train2014.json").write_text("{}")
    with pytest.raises(DatasetError, match="this looks like a COCO dataset: pass --dataset coco"):
        build_dataset("demo", coco, "train", cache_dir=cache_dir)
    with pytest.raises(DatasetError, match="this looks like a folder dataset: pass --dataset folder"):
        build_dataset("demo", make_folder(tmp_path / "mine"), "train", cache_dir=cache_dir)

    from typer.testing import CliRunner

    from dgcn_cli.app import app

    r = CliRunner().invoke(app, ["saliency-bg", "--data-root", str(voc), "--out", str(tmp_path / "sal.h5")])
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    # a forgotten --dataset is asked for, not guessed (there is no default dataset)
    assert r.exit_code != 0 and len(errors) == 1 and "--dataset is needed" in errors[0], r.output
    assert "Traceback" not in r.output


# -- VOC on the real photos -----------------------------------------------------------------


def test_voc_on_coco128(coco128_voc: Path, cache_dir: Path) -> None:
    before = sorted(p.relative_to(coco128_voc) for p in coco128_voc.rglob("*"))
    sizes = {}
    for split, n in (("train", 73), ("val", 24), ("trainval", 97)):
        ds = DataConfig(dataset="voc", data_root=coco128_voc, split=split, cache_dir=cache_dir).build()
        assert len(ds.ids) == n and ds.class_names == VOC_CLASSES and ds.num_classes == 21
        assert not list(cache_dir.rglob(f"{split}.json")), "labels are derived when first asked for"
        ds.labels(ds.ids[0])
        sizes[split] = set(ds.ids)
    assert sizes["train"] | sizes["val"] == sizes["trainval"] and not sizes["train"] & sizes["val"]

    ds = build_dataset("voc", coco128_voc, "trainval", cache_dir=cache_dir)
    for image_id in ds.ids:
        present = np.unique(ds.load_mask(image_id))
        assert ds.labels(image_id) == tuple(int(c) for c in present if c not in (0, 255))
        assert ds.image_path(image_id).is_file()
    assert any(len(ds.labels(i)) >= 2 for i in ds.ids)
    img = ds.load_image(ds.ids[0])
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[:2] == ds.load_mask(ds.ids[0]).shape

    caches = sorted((cache_dir / "labels" / "voc").rglob("*.json"))
    assert {p.name for p in caches} == {"train.json", "val.json", "trainval.json"}
    after = sorted(p.relative_to(coco128_voc) for p in coco128_voc.rglob("*"))
    assert after == before, "nothing may be written inside the dataset folder"

    # the cache is what a second load reads
    ds = build_dataset("voc", coco128_voc, "val", cache_dir=cache_dir)
    val_cache = next(p for p in caches if p.name == "val.json")
    data = json.loads(val_cache.read_text())
    data[ds.ids[0]] = [7]
    val_cache.write_text(json.dumps(data))
    again = build_dataset("voc", coco128_voc, "val", cache_dir=cache_dir)
    assert again.labels(ds.ids[0]) == (7,)


def test_voc_label_cache_is_rebuilt_when_damaged(demo_root: Path, cache_dir: Path) -> None:
    ds = build_dataset("voc", demo_root, "val", cache_dir=cache_dir)
    ds.weak()  # derives the labels, writing the cache
    (cache,) = (cache_dir / "labels" / "voc").rglob("val.json")
    cache.write_text("{not json")
    again = build_dataset("voc", demo_root, "val", cache_dir=cache_dir)
    assert {i: again.labels(i) for i in again.ids} == {i: ds.labels(i) for i in ds.ids}
    assert json.loads(cache.read_text())  # rewritten


def test_voc_root_may_hold_vocdevkit(demo_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    ids = ["train_0000", "train_0003", "train_0007"]
    voc = make_voc_tree(
        tmp_path / "data" / "VOCdevkit" / "VOC2012",
        ids,
        images={i: demo_root / "JPEGImages" / f"{i}.jpg" for i in ids},
        masks={i: demo_root / "SegmentationClass" / f"{i}.png" for i in ids},
    )
    reference = build_dataset("demo", demo_root, "train", cache_dir=cache_dir)
    for root in (tmp_path / "data", tmp_path / "data" / "VOCdevkit", voc):
        ds = build_dataset("voc", root, "train", cache_dir=cache_dir)
        assert ds.root == voc
        assert ds.ids == ids
        for i in ids:
            assert ds.labels(i) == reference.labels(i)
            np.testing.assert_array_equal(ds.load_image(i), reference.load_image(i))


def test_voc_wrong_layout(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", tmp_path, "train", cache_dir=cache_dir)
    msg = one_line(err)
    assert str(tmp_path) in msg and "ImageSets/Segmentation" in msg and "JPEGImages" in msg
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", None, "train", cache_dir=cache_dir)
    assert "--data-root" in one_line(err)


def test_voc_unknown_split_lists_available(demo_root: Path, cache_dir: Path) -> None:
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", demo_root, "test", cache_dir=cache_dir)
    msg = one_line(err)
    assert "'test'" in msg and "train, trainval, val" in msg


def test_voc_mask_with_out_of_range_class(tmp_path: Path, cache_dir: Path) -> None:
    masks = tmp_path / "m"
    masks.mkdir()
    write_palette_png(masks / "a.png", np.full((12, 16), 30, np.uint8))
    root = make_voc_tree(tmp_path / "voc", ["a"], masks={"a": masks / "a.png"})
    ds = build_dataset("voc", root, "train", cache_dir=cache_dir)
    with pytest.raises(DatasetError) as err:
        ds.labels("a")
    assert "30" in one_line(err)


# -- label files ------------------------------------------------------------------------


def test_voc_text_labels_file_without_masks(tmp_path: Path, cache_dir: Path) -> None:
    ids = ["2007_000032", "2007_000039", "2008_000123"]
    root = make_voc_tree(tmp_path / "VOC2012", ids)
    assert not (root / "SegmentationClass").exists()

    ds = build_dataset("voc", root, "train", cache_dir=cache_dir)  # opens without masks or labels
    assert not ds.has_masks() and ds.ids == ids
    with pytest.raises(DatasetError) as err:
        ds.labels(ids[0])
    assert "--labels-file" in one_line(err)

    lf = tmp_path / "labels.txt"
    lf.write_text(
        "# id classes\n"
        "2007_000032 aeroplane person\n"
        "2007_000039 20 15 15\n"  # by index; duplicates collapse
        "\n"
        "2008_000123 dog,7\n"
        "2099_999999 cat\n"  # not in the split: ignored
    )
    ds = build_dataset("voc", root, "train", labels_file=lf, cache_dir=cache_dir)
    assert not ds.has_masks()
    assert ds.labels("2007_000032") == (1, 15)
    assert ds.labels("2007_000039") == (15, 20)
    assert ds.labels("2008_000123") == (7, 12)
    with pytest.raises(DatasetError) as err:
        ds.load_mask("2007_000032")
    assert "no masks" in one_line(err)
    assert not list(cache_dir.rglob("*.json")), "labels from a file need no label cache"


def test_text_labels_file_errors(tmp_path: Path, cache_dir: Path) -> None:
    root = make_voc_tree(tmp_path / "VOC2012", ["a", "b"])
    bad = tmp_path / "bad.txt"
    bad.write_text("a person\nb unicorn\n")
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", root, "train", labels_file=bad, cache_dir=cache_dir)
    msg = one_line(err)
    assert "bad.txt:2" in msg and "unicorn" in msg

    for tok in ("0", "21", "background"):
        bad.write_text(f"a person\nb {tok}\n")
        with pytest.raises(DatasetError):
            build_dataset("voc", root, "train", labels_file=bad, cache_dir=cache_dir)

    short = tmp_path / "short.txt"
    short.write_text("a person\n")
    ds = build_dataset("voc", root, "train", labels_file=short, cache_dir=cache_dir)  # opens: labels are read when asked for
    with pytest.raises(DatasetError) as err:
        ds.labels("a")
    assert one_line(err).endswith("e.g. b")
    with pytest.raises(DatasetError) as err:
        ds.weak()
    assert one_line(err).endswith("e.g. b")

    with pytest.raises(DatasetError) as err:
        build_dataset("voc", root, "train", labels_file=tmp_path / "absent.txt", cache_dir=cache_dir)
    assert "absent.txt" in one_line(err)


def _vec(*classes: int) -> np.ndarray:
    v = np.zeros(20, np.float32)
    for c in classes:
        v[c - 1] = 1
    return v


def test_cls_labels_npy_int_keys(tmp_path: Path, cache_dir: Path) -> None:
    ids = ["2007_000032", "2007_000039", "2011_003276"]
    root = make_voc_tree(tmp_path / "VOC2012", ids)
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {2007000032: _vec(1, 15), 2007000039: _vec(20), 2011003276: _vec(3, 7, 19)})
    ds = build_dataset("voc", root, "train", labels_file=npy, cache_dir=cache_dir)
    assert ds.labels("2007_000032") == (1, 15)
    assert ds.labels("2007_000039") == (20,)
    assert ds.labels("2011_003276") == (3, 7, 19)
    np.testing.assert_array_equal(ds.label_vector("2011_003276"), _vec(3, 7, 19))


def test_cls_labels_npy_str_keys(tmp_path: Path, cache_dir: Path) -> None:
    ids = ["2007_000032", "img_b"]
    root = make_voc_tree(tmp_path / "VOC2012", ids)
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {"2007_000032": _vec(2), "img_b": np.zeros(20, np.uint8)})
    ds = build_dataset("voc", root, "train", labels_file=npy, cache_dir=cache_dir)
    assert ds.labels("2007_000032") == (2,)
    assert ds.labels("img_b") == ()


def test_cls_labels_npy_wrong_length_or_type(tmp_path: Path, cache_dir: Path) -> None:
    root = make_voc_tree(tmp_path / "VOC2012", ["a"])
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {"a": np.zeros(80, np.float32)})
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", root, "train", labels_file=npy, cache_dir=cache_dir)
    assert "80" in one_line(err) and "20" in one_line(err)
    np.save(npy, np.zeros((3, 20), np.float32))
    with pytest.raises(DatasetError) as err:
        build_dataset("voc", root, "train", labels_file=npy, cache_dir=cache_dir)
    assert "dict" in one_line(err)


# -- folder dataset ---------------------------------------------------------------------


def make_folder(root: Path, *, masks: bool = False) -> Path:
    (root / "images").mkdir(parents=True)
    tiny_jpeg(root / "images" / "cat1.jpg")
    Image.new("RGB", (10, 8), (0, 200, 0)).save(root / "images" / "dog_and_cat.png")
    tiny_jpeg(root / "images" / "empty.jpeg")
    (root / "images" / "notes.txt").write_text("not an image")
    (root / "classes.txt").write_text("background\ncat\ndog\n# a comment\n")
    (root / "train.csv").write_text("image,labels\ncat1.jpg,cat\ndog_and_cat.png,dog;cat\nempty.jpeg,\n")
    if masks:
        (root / "masks").mkdir()
        write_palette_png(root / "masks" / "cat1.png", np.ones((12, 16), np.uint8))
    return root


def test_folder_dataset(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "mine")
    ds = build_dataset("folder", root, "train", cache_dir=cache_dir)
    assert ds.class_names == ("background", "cat", "dog")
    assert ds.ids == ["cat1", "dog_and_cat", "empty"]
    assert ds.labels("cat1") == (1,) and ds.labels("dog_and_cat") == (1, 2) and ds.labels("empty") == ()
    assert ds.image_path("dog_and_cat").name == "dog_and_cat.png"
    assert ds.load_image("dog_and_cat").shape == (8, 10, 3)
    assert not ds.has_masks()
    with pytest.raises(DatasetError) as err:
        ds.load_mask("cat1")
    assert "masks/" in one_line(err)


def test_folder_dataset_with_masks(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "mine", masks=True)
    ds = build_dataset("folder", root, "train", cache_dir=cache_dir)
    assert ds.has_masks()
    mask = ds.load_mask("cat1")
    assert mask.shape == (12, 16) and (mask == 1).all()


def test_folder_labels_file_instead_of_csv(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "mine")
    lf = tmp_path / "l.txt"
    lf.write_text("cat1 dog\nempty 1 2\n")
    ds = build_dataset("folder", root, "whatever", labels_file=lf, cache_dir=cache_dir)
    assert ds.ids == ["cat1", "empty"] and ds.labels("empty") == (1, 2) and ds.labels("cat1") == (2,)


@pytest.mark.parametrize(
    "csv_text, expect",
    [
        ("file,classes\ncat1.jpg,cat\n", "'image' and 'labels'"),
        ("image,labels\ncat1.jpg,cat\ndog_and_cat.png,dog horse\n", "train.csv:3: unknown class 'horse'"),
        ("image,labels\ncat1.jpg,background\n", "unknown class 'background'"),
        ("image,labels\nmissing.jpg,cat\n", "missing"),
    ],
    ids=["header", "unknown-class", "background-label", "missing-image"],
)
def test_folder_bad_csv(tmp_path: Path, cache_dir: Path, csv_text: str, expect: str) -> None:
    root = make_folder(tmp_path / "mine")
    (root / "train.csv").write_text(csv_text)
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", root, "train", cache_dir=cache_dir)
    assert expect in one_line(err)


@pytest.mark.parametrize(
    "classes, expect",
    [("cat\ncat\n", "duplicates"), ("background\n", "at least one"), (None, "class list not found")],
    ids=["duplicate", "empty", "missing"],
)
def test_folder_bad_class_list(tmp_path: Path, cache_dir: Path, classes, expect: str) -> None:
    root = make_folder(tmp_path / "mine")
    if classes is None:
        (root / "classes.txt").unlink()
    else:
        (root / "classes.txt").write_text(classes)
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", root, "train", cache_dir=cache_dir)
    assert expect in one_line(err)


def test_folder_layout_errors(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "mine")
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", root, "val", cache_dir=cache_dir)
    assert "available splits: train" in one_line(err)
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", tmp_path / "nowhere", "train", cache_dir=cache_dir)
    assert "images/" in one_line(err)
    with pytest.raises(DatasetError):
        build_dataset("folder", None, "train", cache_dir=cache_dir)
    (tmp_path / "noimg").mkdir()
    (tmp_path / "noimg" / "classes.txt").write_text("cat\n")
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", tmp_path / "noimg", "train", cache_dir=cache_dir)
    assert "no images/" in one_line(err)


# -- WeakDataset -------------------------------------------------------------------------


def _walk(obj, seen=None):
    """Every object reachable through dataclass fields, mappings and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), seen)
    elif isinstance(obj, dict) or hasattr(obj, "items") and hasattr(obj, "keys"):
        for k, v in obj.items():
            yield from _walk(k, seen)
            yield from _walk(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _walk(v, seen)


def test_weak_dataset_has_no_path_to_masks(demo_root: Path, cache_dir: Path) -> None:
    ds = build_dataset("demo", demo_root, "train", cache_dir=cache_dir)
    weak = ds.weak()
    assert isinstance(weak, WeakDataset)
    assert weak.name == "demo" and weak.split == "train" and weak.class_names == DEMO_CLASSES
    assert weak.num_classes == 6 and len(weak) == 12 and list(weak.ids) == ds.ids
    for i in weak.ids:
        assert weak.labels(i) == ds.labels(i)
        np.testing.assert_array_equal(weak.label_vector(i), ds.label_vector(i))
    np.testing.assert_array_equal(weak.load_image(weak.ids[0]), ds.load_image(ds.ids[0]))

    assert not hasattr(weak, "load_mask") and not hasattr(weak, "has_masks")
    for obj in _walk(weak):
        assert obj is not ds and not isinstance(obj, SegDataset)
        if isinstance(obj, Path):
            assert "SegmentationClass" not in obj.parts
    with pytest.raises(dataclasses.FrozenInstanceError):
        weak.ids = ()  # type: ignore[misc]
