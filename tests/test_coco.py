"""The coco dataset: split resolution, labels, rasterised masks, the mask cache and errors."""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fixtures_coco import (
    ANN_CAR_SMALL,
    ANN_DOG_RLE,
    ANN_PERSON_BIG,
    ANN_TOOTHBRUSH_RLE,
    CAR_CROWD_BOX,
    COCO_CATEGORIES,
    CROWD_BOX,
    CROWD_IMAGE,
    CROWD_ONLY_IMAGE,
    DOG_BOX,
    EMPTY_IMAGE,
    HEIGHT,
    OVERLAP_IMAGE,
    RLE_IMAGE,
    TOOTHBRUSH_BOX,
    WIDTH,
    box_mask,
    image_stem,
    write_coco_fixture,
)
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from stages.core.datasets import DATASETS, build_dataset
from stages.core.datasets.coco import CocoDataset, _rle_string_total
from stages.core.errors import DatasetError

# pycocotools' own annToMask (the reference here) warns on every call under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128-coco"
N_IMAGES = 8


def load_coco_api(ann_file: Path) -> COCO:
    # pycocotools prints progress; keep the test log readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def class_counts(mask: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(mask, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco_fixture(root, "train2014", n_images=N_IMAGES, seed=0)
    write_coco_fixture(root, "val2014", n_images=N_IMAGES, seed=1)
    return root


@pytest.fixture
def train(fixture_root, tmp_path) -> CocoDataset:
    return build_dataset("coco", fixture_root, "train2014", cache_dir=tmp_path / "cache")


@pytest.fixture
def val(fixture_root, tmp_path) -> CocoDataset:
    return build_dataset("coco", fixture_root, "val2014", cache_dir=tmp_path / "cache")


# -- classes, ids, labels ------------------------------------------------------------------------


def test_registered():
    assert "coco" in DATASETS


def test_classes_are_contiguous_in_official_id_order(train):
    assert train.name == "coco"
    assert train.num_classes == 81
    assert train.class_names[0] == "background"
    assert train.class_names[1:] == tuple(name for _, name in COCO_CATEGORIES)
    assert train.category_ids == tuple(cid for cid, _ in COCO_CATEGORIES)
    # Official ids have gaps (12, 26, 29, ...): the contiguous id skips them.
    for official, contiguous, name in [(1, 1, "person"), (3, 3, "car"), (13, 12, "stop sign"),
                                       (18, 17, "dog"), (90, 80, "toothbrush")]:
        assert train.category_ids[contiguous - 1] == official
        assert train.class_names[contiguous] == name


def test_image_labels_use_non_crowd_annotations(val):
    assert val.labels(image_stem("val2014", OVERLAP_IMAGE)) == (1, 3)
    assert val.labels(image_stem("val2014", RLE_IMAGE)) == (17, 80)
    assert val.labels(image_stem("val2014", CROWD_IMAGE)) == (1,)
    assert val.labels(image_stem("val2014", CROWD_ONLY_IMAGE)) == ()
    assert val.labels(image_stem("val2014", EMPTY_IMAGE)) == ()
    vec = val.label_vector(image_stem("val2014", RLE_IMAGE))
    assert vec.shape == (80,) and np.flatnonzero(vec).tolist() == [16, 79]


def test_train_drops_unlabelled_images_and_val_keeps_them(train, val):
    dropped = {image_stem("train2014", EMPTY_IMAGE), image_stem("train2014", CROWD_ONLY_IMAGE)}
    assert len(train) == N_IMAGES - 2
    assert not dropped & set(train.ids)
    assert all(train.labels(i) for i in train.ids)
    assert len(val) == N_IMAGES
    assert val.ids == sorted(val.ids)
    empty = image_stem("val2014", EMPTY_IMAGE)
    assert (val.load_mask(empty) == 0).all()
    assert val.load_mask(empty).shape == (HEIGHT, WIDTH)


def test_ids_are_file_stems_with_coco_ids_and_paths(train, fixture_root):
    stem = image_stem("train2014", OVERLAP_IMAGE)
    assert stem == "COCO_train2014_000000000009"
    assert train.coco_image_id(stem) == OVERLAP_IMAGE
    assert train.image_path(stem) == fixture_root / "train2014" / f"{stem}.jpg"
    assert train.load_image(stem).shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(DatasetError, match="not in coco split train2014"):
        train.labels("nope")
    weak = train.weak()
    assert weak.ids == tuple(train.ids) and weak.labels(stem) == (1, 3)


def test_split_shorthand_resolves_to_the_one_year(fixture_root, tmp_path, capsys):
    ds = build_dataset("coco", fixture_root, "train", cache_dir=tmp_path)
    assert ds.split == "train2014"
    assert build_dataset("coco", fixture_root, "val", cache_dir=tmp_path).split == "val2014"
    # Nothing reaches stdout: the CLI's own output stays clean.
    assert capsys.readouterr().out == ""


# -- masks -----------------------------------------------------------------------------------


def test_smaller_objects_are_drawn_over_larger_ones(val, fixture_root):
    api = load_coco_api(fixture_root / "annotations" / "instances_val2014.json")
    person = api.annToMask(api.anns[ANN_PERSON_BIG]).astype(bool)
    car = api.annToMask(api.anns[ANN_CAR_SMALL]).astype(bool)
    assert person.sum() == 40 * 36 and (person & car).sum() == 16 * 16
    mask = val.load_mask(image_stem("val2014", OVERLAP_IMAGE))
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    assert class_counts(mask) == {0: HEIGHT * WIDTH - (person | car).sum(), 1: 40 * 36 - 16 * 16, 3: car.sum()}
    assert (mask[car] == 3).all()


def test_rle_annotations_uncompressed_and_compressed(val):
    mask = val.load_mask(image_stem("val2014", RLE_IMAGE))
    assert class_counts(mask) == {0: HEIGHT * WIDTH - 200 - 180, 17: 200, 80: 180}
    assert (mask[box_mask(DOG_BOX).astype(bool)] == 17).all()
    assert (mask[box_mask(TOOTHBRUSH_BOX).astype(bool)] == 80).all()


def test_crowd_is_ignored_where_no_object_was_drawn(val):
    mask = val.load_mask(image_stem("val2014", CROWD_IMAGE))
    crowd = box_mask(CROWD_BOX).astype(bool)
    person_pixels = 30 * 32
    overlap = 10 * 32  # the person's columns 30..39 lie inside the crowd box
    assert class_counts(mask) == {0: HEIGHT * WIDTH - crowd.sum() - person_pixels + overlap,
                                  1: person_pixels, 255: crowd.sum() - overlap}
    assert set(np.unique(mask[crowd]).tolist()) == {1, 255}
    only = val.load_mask(image_stem("val2014", CROWD_ONLY_IMAGE))
    assert class_counts(only) == {0: HEIGHT * WIDTH - 800, 255: 800}
    assert (only[box_mask(CAR_CROWD_BOX).astype(bool)] == 255).all()


def test_every_mask_agrees_with_pycocotools(val, fixture_root):
    api = load_coco_api(fixture_root / "annotations" / "instances_val2014.json")
    for image_id in val.ids:
        anns = api.loadAnns(api.getAnnIds(imgIds=[val.coco_image_id(image_id)]))
        objects = np.zeros((HEIGHT, WIDTH), dtype=bool)
        for a in anns:
            if not a["iscrowd"]:
                objects |= api.annToMask(a).astype(bool)
        mask = val.load_mask(image_id)
        assert ((mask > 0) & (mask < 255)).sum() == objects.sum(), image_id
        present = set(np.unique(mask).tolist()) - {0, 255}
        assert present <= set(val.labels(image_id))


def test_masks_are_cached_and_reused(val, tmp_path, monkeypatch):
    image_id = image_stem("val2014", OVERLAP_IMAGE)
    first = val.load_mask(image_id)
    cached = val.mask_cache_dir() / f"{image_id}.png"
    assert cached.is_file()
    assert cached.parent.parent == tmp_path / "cache" / "coco" / "val2014"
    assert not list(cached.parent.glob("*.tmp"))
    before = cached.stat().st_mtime_ns

    def no_rasterising(*args, **kwargs):
        raise AssertionError("rasterised again instead of reading the cache")

    monkeypatch.setattr(CocoDataset, "rasterise", no_rasterising)
    again = build_dataset("coco", val.root, "val2014", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.load_mask(image_id), first)
    assert cached.stat().st_mtime_ns == before


def test_edited_annotation_file_gets_a_fresh_cache(tmp_path):
    root = write_coco_fixture(tmp_path / "data", "val2017", n_images=5)
    ds = build_dataset("coco", root, "val2017", cache_dir=tmp_path / "cache")
    ds.load_mask(ds.ids[0])
    ann_file = root / "annotations" / "instances_val2017.json"
    st = ann_file.stat()
    os.utime(ann_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    edited = build_dataset("coco", root, "val2017", cache_dir=tmp_path / "cache")
    assert edited.mask_cache_dir() != ds.mask_cache_dir()
    assert edited.mask_cache_dir().parent == ds.mask_cache_dir().parent


def test_compressed_rle_totals_match_pycocotools():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 7), (48, 64), (200, 31)]:
        for density in (0.0, 0.1, 0.5, 1.0):
            m = (rng.random((h, w)) < density).astype(np.uint8)
            counts = mask_utils.encode(np.asfortranarray(m))["counts"].decode("ascii")
            assert _rle_string_total(counts) == h * w
    assert _rle_string_total("\x7f") is None
    assert _rle_string_total("0k") is None  # 'k' announces a continuation that never comes


# -- errors ----------------------------------------------------------------------------------


def assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_layout_errors(fixture_root, tmp_path):
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", None, "train", cache_dir=tmp_path)
    assert_one_line(err, "--data-root", "instances_<split>.json")
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", tmp_path / "absent", "train", cache_dir=tmp_path)
    assert_one_line(err, str(tmp_path / "absent"), "not a folder")
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", fixture_root, "test2015", cache_dir=tmp_path)
    assert_one_line(err, "test2015", "instances_test2015.json", "splits found: train2014, val2014")
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", fixture_root, "train", labels_file=tmp_path / "l.txt", cache_dir=tmp_path)
    assert_one_line(err, "--labels-file")


def test_missing_half_of_a_split(tmp_path):
    root = write_coco_fixture(tmp_path / "d", "train2014", n_images=5)
    (root / "val2014").mkdir()
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "val2014", cache_dir=tmp_path)
    assert_one_line(err, "annotation file", str(root / "annotations" / "instances_val2014.json"), "splits found: train2014")
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "val", cache_dir=tmp_path)
    assert_one_line(err, "--split val resolved to val2014", "instances_val2014.json is missing")
    (root / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "val2017", cache_dir=tmp_path)
    assert_one_line(err, "images folder", str(root / "val2017"))


def test_ambiguous_shorthand(tmp_path):
    root = write_coco_fixture(tmp_path / "d", "train2014", n_images=5)
    write_coco_fixture(root, "train2017", n_images=5)
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "train", cache_dir=tmp_path)
    assert_one_line(err, "ambiguous", "train2014, train2017")
    assert build_dataset("coco", root, "train2017", cache_dir=tmp_path).split == "train2017"


def test_train_split_without_labelled_images(tmp_path):
    root = write_coco_fixture(tmp_path / "d", "train2014", n_images=5)
    ann_file = root / "annotations" / "instances_train2014.json"
    data = json.loads(ann_file.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["iscrowd"]]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "train", cache_dir=tmp_path)
    assert_one_line(err, str(ann_file), "no image has a non-crowd annotation")


def test_missing_image_file(tmp_path):
    root = write_coco_fixture(tmp_path / "d", "train2014", n_images=5)
    (root / "train2014" / f"{image_stem('train2014', RLE_IMAGE)}.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "train2014", cache_dir=tmp_path)
    assert_one_line(err, "1 of 5 images", f"{image_stem('train2014', RLE_IMAGE)}.jpg")


def _ann(data: dict, ann_id: int) -> dict:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _set(ann_id: int, key: str, value):
    def edit(data):
        _ann(data, ann_id)[key] = value
    return edit


def _edit_rle(ann_id: int, key: str, value):
    def edit(data):
        _ann(data, ann_id)["segmentation"][key] = value
    return edit


def _drop_key(key: str):
    def edit(data):
        del data[key]
    return edit


def _duplicate_image(data):
    data["images"].append(dict(data["images"][0]))


def _duplicate_category(data):
    data["categories"].append({"id": 1, "name": "person again"})


def _two_bad_annotations(data):
    _ann(data, ANN_CAR_SMALL)["image_id"] = 424242
    _ann(data, ANN_DOG_RLE)["category_id"] = 12


def _no_annotation_id(data):
    del _ann(data, ANN_DOG_RLE)["id"]


def _image_without_size(data):
    del data["images"][1]["height"]


MALFORMED = {
    "top-level list": (lambda data: [data], "JSON object"),
    "no images": (_drop_key("images"), "'images'"),
    "no annotations": (_drop_key("annotations"), "'annotations'"),
    "no categories": (_drop_key("categories"), "'categories'"),
    "unknown image": (_set(ANN_CAR_SMALL, "image_id", 424242), f"annotation {ANN_CAR_SMALL} refers to unknown image id 424242"),
    "unknown category": (_set(ANN_DOG_RLE, "category_id", 12), f"annotation {ANN_DOG_RLE} refers to unknown category id 12"),
    "first offender named": (_two_bad_annotations, f"annotation {ANN_CAR_SMALL}"),
    "string segmentation": (_set(ANN_PERSON_BIG, "segmentation", "poly"), f"annotation {ANN_PERSON_BIG}: segmentation must be"),
    "no segmentation": (_set(ANN_PERSON_BIG, "segmentation", None), f"annotation {ANN_PERSON_BIG}: segmentation must be"),
    "flat polygon": (_set(ANN_PERSON_BIG, "segmentation", [1, 2, 3, 4, 5, 6]), f"annotation {ANN_PERSON_BIG}: a polygon"),
    "odd polygon": (_set(ANN_PERSON_BIG, "segmentation", [[1, 2, 3, 4, 5, 6, 7]]), "even length"),
    "RLE without counts": (_edit_rle(ANN_DOG_RLE, "counts", None), f"annotation {ANN_DOG_RLE}: RLE 'counts'"),
    "RLE wrong size": (_edit_rle(ANN_DOG_RLE, "size", [10, 10]), f"annotation {ANN_DOG_RLE}: RLE size [10, 10]"),
    "RLE wrong total": (_edit_rle(ANN_DOG_RLE, "counts", [5, 5]), f"annotation {ANN_DOG_RLE}: RLE counts sum to 10"),
    "bad iscrowd": (_set(ANN_DOG_RLE, "iscrowd", "yes"), f"annotation {ANN_DOG_RLE}: 'iscrowd'"),
    "annotation without id": (_no_annotation_id, "has no integer 'id'"),
    "duplicate image": (_duplicate_image, "image id 9 appears twice"),
    "duplicate category": (_duplicate_category, "category id 1 appears twice"),
    "image without height": (_image_without_size, "images[1]"),
    "no images at all": (lambda data: {**data, "images": [], "annotations": []}, "lists no images"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_annotation_file(case, tmp_path):
    root = write_coco_fixture(tmp_path / "d", "val2014", n_images=5)
    ann_file = root / "annotations" / "instances_val2014.json"
    edit, needle = MALFORMED[case]
    data = json.loads(ann_file.read_text())
    replaced = edit(data)
    ann_file.write_text(json.dumps(replaced if replaced is not None else data))
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "val", cache_dir=tmp_path / "cache")
    msg = assert_one_line(err, str(ann_file), needle)
    if case == "first offender named":
        assert f"annotation {ANN_DOG_RLE}" not in msg


@pytest.mark.parametrize("text", ["{not json", "", '{"images": [}'])
def test_invalid_json(text, tmp_path):
    root = write_coco_fixture(tmp_path / "d", "val2014", n_images=5)
    ann_file = root / "annotations" / "instances_val2014.json"
    ann_file.write_text(text)
    with pytest.raises(DatasetError) as err:
        build_dataset("coco", root, "val", cache_dir=tmp_path / "cache")
    assert_one_line(err, "--split val resolved to val2014", str(ann_file), "invalid JSON at line 1")


@pytest.mark.parametrize(
    "ann_id, segmentation, needle",
    [
        (ANN_PERSON_BIG, [[4, 4, "x", 4, 44, 40]], "cannot rasterise"),
        (ANN_TOOTHBRUSH_RLE, {"size": [HEIGHT, WIDTH], "counts": "0k"}, "compressed RLE"),
        (ANN_TOOTHBRUSH_RLE, {"size": [HEIGHT, WIDTH], "counts": "P1"}, "compressed RLE"),
    ],
)
def test_bad_geometry_fails_when_rasterised(ann_id, segmentation, needle, tmp_path):
    root = write_coco_fixture(tmp_path / "d", "val2014", n_images=5)
    ann_file = root / "annotations" / "instances_val2014.json"
    data = json.loads(ann_file.read_text())
    ann = _ann(data, ann_id)
    ann["segmentation"] = segmentation
    ann_file.write_text(json.dumps(data))
    ds = build_dataset("coco", root, "val2014", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError) as err:
        ds.load_mask(image_stem("val2014", ann["image_id"]))
    assert_one_line(err, str(ann_file), f"annotation {ann_id}", needle)


# -- the real coco128 sample -------------------------------------------------------------------

needs_coco128 = pytest.mark.skipif(
    not (COCO128 / "annotations" / "instances_train2017.json").is_file(),
    reason=f"real COCO sample not found at {COCO128}",
)


@needs_coco128
def test_coco128_against_pycocotools(tmp_path):
    ds = build_dataset("coco", COCO128, "train", cache_dir=tmp_path)
    assert ds.split == "train2017" and ds.num_classes == 81
    ann_file = COCO128 / "annotations" / "instances_train2017.json"
    api = load_coco_api(ann_file)
    assert ds.class_names[1:] == tuple(c["name"] for c in api.loadCats(sorted(api.getCatIds())))
    contiguous = {cid: i + 1 for i, cid in enumerate(sorted(api.getCatIds()))}

    annotated = {api.imgs[i]["file_name"].rsplit(".", 1)[0] for i in api.imgs if api.getAnnIds(imgIds=[i])}
    assert len(api.imgs) == 128 and len(annotated) == 126  # 2 images without annotation are dropped
    assert ds.ids == sorted(annotated)

    exact_checked = 0
    for image_id in ds.ids:
        anns = api.loadAnns(api.getAnnIds(imgIds=[ds.coco_image_id(image_id)]))
        assert ds.labels(image_id) == tuple(sorted({contiguous[a["category_id"]] for a in anns if not a["iscrowd"]}))
        per_class: dict[int, np.ndarray] = {}
        for a in anns:
            m = api.annToMask(a).astype(bool)
            c = contiguous[a["category_id"]]
            per_class[c] = per_class.get(c, np.zeros_like(m)) | m
        mask = ds.load_mask(image_id)
        union = np.logical_or.reduce(list(per_class.values()))
        assert ((mask > 0) & (mask < 255)).sum() == union.sum(), image_id
        stacked = np.stack(list(per_class.values())).sum(axis=0)
        if (stacked <= 1).all():
            exact_checked += 1
            expected = {c: int(m.sum()) for c, m in per_class.items() if m.any()}
            got = {c: n for c, n in class_counts(mask).items() if c != 0}
            assert got == expected, image_id
    assert exact_checked >= 20
