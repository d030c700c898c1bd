"""CAM computation, seed fusion and seed imports (issue: seeds)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from fixtures_dsrg import write_dsrg_cues

from stages import seeds as seeds_stage
from stages.core.datasets import DataConfig
from stages.core.cues.seeding import FusionConfig, cues_to_seeds, fuse_seeds
from stages.core.errors import DgcnError
from stages.core.io.artifacts import ArtifactReader
from stages.core.nets import build_classifier
from stages.core.predict.classifier import multiscale_cam


@pytest.fixture(scope="module")
def tiny_clf():
    torch.manual_seed(0)
    return build_classifier("tiny", 3).eval()


def test_flipped_image_gives_flipped_cam(tiny_clf):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(40, 56, 3), dtype=np.uint8)
    cam = multiscale_cam(tiny_clf, img, [1, 3], (0.5, 1.0, 1.5), torch.device("cpu"))
    cam_f = multiscale_cam(tiny_clf, img[:, ::-1].copy(), [1, 3], (0.5, 1.0, 1.5), torch.device("cpu"))
    assert cam.shape == (2, 40, 56)
    np.testing.assert_allclose(cam_f, cam[:, :, ::-1], atol=1e-5)
    # max-normalised per class (a class whose maps are all negative stays 0 after ReLU)
    peaks = cam.reshape(2, -1).max(axis=1)
    assert peaks.max() == pytest.approx(1.0, abs=1e-5)
    assert all(p == pytest.approx(1.0, abs=1e-5) or p == 0 for p in peaks)
    assert cam.min() >= 0


def test_single_scale_cam_is_relu_of_class_maps_upsampled(tiny_clf):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    from stages.core.nets.inputs import to_tensor

    x = to_tensor(img)[None]
    with torch.no_grad():
        raw = tiny_clf.cam(torch.cat([x, x.flip(-1)]))[:, [1]]
    summed = torch.relu(raw[0]) + torch.relu(raw[1]).flip(-1)
    up = torch.nn.functional.interpolate(summed[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
    expect = (up / up.max().clamp_min(1e-5)).numpy()
    got = multiscale_cam(tiny_clf, img, [2], (1.0,), torch.device("cpu"))
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_no_classes_gives_empty_cam(tiny_clf):
    img = np.zeros((16, 20, 3), np.uint8)
    assert multiscale_cam(tiny_clf, img, [], (1.0,), torch.device("cpu")).shape == (0, 16, 20)


def test_fusion_rules_on_hand_made_maps():
    cam = np.zeros((2, 3, 4), np.float32)
    cam[0, 0, 0] = 0.9  # class 2 fires
    cam[1, 0, 1] = 0.8  # class 5 fires
    cam[0, 0, 2], cam[1, 0, 2] = 0.6, 0.7  # both fire: the higher (class 5) wins
    cam[0, 1, 0] = 0.2  # below threshold, salient: unlabelled
    cam[0, 2, 3] = 0.25  # below threshold, not salient: background
    sal = np.full((3, 4), 0.9, np.float32)
    sal[2, :] = 0.0  # bottom row not salient
    sal[0, 0] = 0.0  # fires AND not salient: class wins, never background
    seeds = fuse_seeds(cam, np.array([2, 5]), sal, FusionConfig(fg_thresh=0.3, bg_sal_thresh=0.1))
    expect = np.array([[2, 5, 5, 255], [255, 255, 255, 255], [0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(seeds, expect)


def test_fusion_with_a_saliency_gate_on_the_foreground():
    cam = np.array([[[0.9, 0.9, 0.9, 0.1]]], np.float32)
    sal = np.array([[0.8, 0.3, 0.05, 0.05]], np.float32)
    # fires on a salient pixel: class; fires on a faint or a non-salient one: unlabelled (never
    # background: the CAM says the class is there); quiet and not salient: background
    seeds = fuse_seeds(cam, np.array([4]), sal, FusionConfig(fg_thresh=0.3, bg_sal_thresh=0.1, fg_sal_thresh=0.4))
    np.testing.assert_array_equal(seeds, [[4, 255, 255, 0]])
    # off (the default): the CAM alone decides
    np.testing.assert_array_equal(fuse_seeds(cam, np.array([4]), sal, FusionConfig()), [[4, 4, 4, 0]])
    with pytest.raises(DgcnError, match="--fg-sal-thresh, needs a saliency"):
        fuse_seeds(cam, np.array([4]), None, FusionConfig(bg_source="cam", fg_sal_thresh=0.4))


def test_fusion_with_cam_background():
    cam = np.array([[[0.9, 0.04, 0.2]]], np.float32)
    seeds = fuse_seeds(cam, np.array([3]), None, FusionConfig(bg_source="cam", bg_cam_thresh=0.05))
    np.testing.assert_array_equal(seeds, [[3, 0, 255]])
    with pytest.raises(DgcnError):
        fuse_seeds(cam, np.array([3]), None, FusionConfig())  # saliency needed


def test_dsrg_cues_two_class_pixels_take_the_higher_class_and_stray_classes_refused():
    cues = np.array([[0, 7, 7, 0], [0, 1, 2, 1], [0, 1, 2, 1]])  # (class, row, col)
    seeds = cues_to_seeds(cues, np.array([0, 7]), 21)
    assert seeds.shape == (41, 41)
    assert seeds[0, 0] == 0 and seeds[2, 2] == 7
    assert seeds[1, 1] == 7  # background and class 7 both cue it: the higher class, as the published loader
    assert (seeds == 255).sum() == 41 * 41 - 3
    # np.where's tuple (what DSRG stores) reads the same as the (3, n) array
    np.testing.assert_array_equal(cues_to_seeds(tuple(cues), np.array([0, 7]), 21), seeds)
    unl = cues_to_seeds(cues, np.array([0, 7]), 21, overlap="unlabelled")
    assert unl[1, 1] == 255 and unl[0, 0] == 0 and unl[2, 2] == 7
    with pytest.raises(DgcnError, match="not among"):
        cues_to_seeds(np.array([[5], [0], [0]]), np.array([0, 7]), 21)
    with pytest.raises(DgcnError, match="three index arrays"):
        cues_to_seeds((np.array([0]), np.array([0])), np.array([0]), 21)
    with pytest.raises(DgcnError, match="out of range"):
        cues_to_seeds((np.array([0]), np.array([41]), np.array([0])), np.array([0]), 21)


def _published_enlarge(grid, h, w):
    """The published loader's scipy zoom (order 0, corners aligned), written out: output
    pixel y reads grid row round(y * 40 / (h - 1)). (No ties for the sizes used here: with
    h - 1 odd, y * 40 / (h - 1) is never k + 1/2.)"""
    rows = np.floor(np.arange(h) * 40 / (h - 1) + 0.5).astype(int)
    cols = np.floor(np.arange(w) * 40 / (w - 1) + 0.5).astype(int)
    return grid[np.ix_(rows, cols)]


def _on_dsrg_grid(reader, ds, image_id):
    """An imported DSRG seed map, stored at the image's size: checked to be the published
    enlargement of a 41x41 map, which is returned (read back at the cells' aligned corners)."""
    label = reader.label(image_id)
    h, w = ds.load_image(image_id).shape[:2]
    assert label.shape == (h, w) and label.dtype == np.uint8
    grid = label[np.ix_(np.round(np.arange(41) * (h - 1) / 40).astype(int), np.round(np.arange(41) * (w - 1) / 40).astype(int))]
    np.testing.assert_array_equal(label, _published_enlarge(grid, h, w))
    return grid


def test_dsrg_enlargement_is_the_published_loaders():
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 21, (41, 41)).astype(np.uint8)
    got = seeds_stage.dsrg_to_image(grid, (375, 500))
    np.testing.assert_array_equal(got, _published_enlarge(grid, 375, 500))
    # corners aligned: the first and last rows and columns are the grid's own
    np.testing.assert_array_equal(got[0, ::499], grid[0, ::40])
    np.testing.assert_array_equal(got[-1, ::499], grid[-1, ::40])
    # not PIL's equal strips (which shift the cells by up to half a cell)
    from stages.core.io.images import resize_label
    assert (resize_label(grid, (375, 500)) != got).mean() > 0.05


def _demo_ds(tmp_path):
    from stages.core.datasets.demo import DemoConfig, write_demo_dataset

    root = write_demo_dataset(tmp_path / "demo", DemoConfig(n_train=4, n_val=2, size=64))
    return DataConfig("demo", root, "train", cache_dir=tmp_path / "cache")


def test_import_hand_made_dsrg_pickle(tmp_path):
    data = _demo_ds(tmp_path)
    ds = data.build()
    cues = {}
    for k, image_id in enumerate(ds.ids):
        c = ds.labels(image_id)[0]
        cues[f"{image_id}_labels"] = np.array([0, c])
        cues[f"{image_id}_cues"] = np.array([[0, c], [0, 10 + k], [0, 20]])
    path = tmp_path / "localization_cues-sal.pickle"
    path.write_bytes(pickle.dumps(cues, protocol=2))
    out = seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "seeds.h5", data=data, from_dsrg=path)).path
    with ArtifactReader(out, kind="seeds", class_names=ds.class_names) as r:
        for k, image_id in enumerate(ds.ids):
            lab = _on_dsrg_grid(r, ds, image_id)
            assert lab[0, 0] == 0 and lab[10 + k, 20] == ds.labels(image_id)[0]
            assert (lab != 255).sum() == 2


def test_dsrg_pickle_that_runs_code_is_refused(tmp_path):
    data = _demo_ds(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"x_cues": Evil()}))
    with pytest.raises(DgcnError, match="refusing"):
        seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, from_dsrg=path))
    assert not marker.exists()
    assert not (tmp_path / "s.h5").exists()


def test_import_irn_cam_dicts(tmp_path):
    data = _demo_ds(tmp_path)
    ds = data.build()
    irn = tmp_path / "irn"
    irn.mkdir()
    for image_id in ds.ids:
        classes = ds.labels(image_id)
        cam = np.zeros((len(classes), 64, 64), np.float32)
        cam[0, :8, :8] = 1.0
        np.save(irn / f"{image_id}.npy", {"keys": np.array(classes) - 1, "high_res": cam})
    out = seeds_stage.run(seeds_stage.SeedsConfig(
        out=tmp_path / "seeds.h5", data=data, from_irn=irn, fusion=FusionConfig(bg_source="cam"))).path
    with ArtifactReader(out, kind="seeds") as r:
        for image_id in ds.ids:
            lab = r.label(image_id)
            assert (lab[:8, :8] == ds.labels(image_id)[0]).all()
            assert (lab[8:, 8:] == 0).all()


# ------------------------------------------- DSRG's pickle as generate_train_gt.py writes it


def _published_decode_from_pickle(pickle_path, list_path, num_classes):
    """The published loader's reading of the files, written out here on its own: the id's
    index from input_list.txt, then each class's cue pixels in increasing class order."""
    with open(pickle_path, "rb") as fh:
        cues = pickle.load(fh, encoding="latin1")  # the test's own file: a plain load is safe
    index = {}
    for line in list_path.read_text().splitlines():
        name, idx = line.split()
        index[os.path.splitext(os.path.basename(name))[0]] = int(idx)
    out = {}
    for image_id, idx in index.items():
        cls, row, col = cues["%i_cues" % idx]
        label = np.full((41, 41), 255, np.uint8)
        for c in range(num_classes):
            label[row[cls == c], col[cls == c]] = c
        out[image_id] = label
    return out


@pytest.mark.parametrize("py2", [True, False], ids=["python2-pickle", "python3-protocol2"])
def test_import_dsrg_pickle_keyed_by_index(tmp_path, py2):
    data = _demo_ds(tmp_path)
    ds = data.build()
    k = len(ds.class_names)
    pkl, lst = tmp_path / "localization_cues-sal.pickle", tmp_path / "input_list.txt"
    expected = write_dsrg_cues(pkl, lst, ds.ids, num_classes=k, rng=np.random.default_rng(3),
                               labels={i: ds.labels(i) for i in ds.ids}, py2=py2)
    with open(pkl, "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    assert all(isinstance(raw[key], tuple) and len(raw[key]) == 3 for key in raw if key.endswith("_cues"))
    assert not any(f"{i}_labels" in raw for i in ds.ids)  # keyed by index only
    independent = _published_decode_from_pickle(pkl, lst, k)
    out = seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "seeds.h5", data=data, from_dsrg=pkl, dsrg_list=lst)).path
    two_cue = 0
    with ArtifactReader(out, kind="seeds", class_names=ds.class_names) as r:
        for image_id in ds.ids:
            got = _on_dsrg_grid(r, ds, image_id)  # at the image's size: DSRG's grid sampled back
            np.testing.assert_array_equal(got, independent[image_id])
            np.testing.assert_array_equal(got, expected[image_id])
            # the pixels cued for two classes: the higher class wins
            cls, row, col = raw["%i_cues" % int(next(ln.split()[1] for ln in lst.read_text().splitlines() if f"{image_id}.jpg" in ln))]
            hits = np.zeros((k, 41, 41), bool)
            hits[cls, row, col] = True
            multi = hits.sum(0) > 1
            two_cue += int(multi.sum())
            top = k - 1 - hits[::-1].argmax(0)
            np.testing.assert_array_equal(got[multi], top[multi])
    assert two_cue >= len(ds.ids)  # every image has some: the rule was exercised


def test_dsrg_two_cue_pixels_unlabelled_on_request(tmp_path):
    data = _demo_ds(tmp_path)
    ds = data.build()
    pkl, lst = tmp_path / "cues.pickle", tmp_path / "input_list.txt"
    expected = write_dsrg_cues(pkl, lst, ds.ids, num_classes=len(ds.class_names), labels={i: ds.labels(i) for i in ds.ids})
    out = seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, from_dsrg=pkl, dsrg_list=lst,
                                                  dsrg_overlap="unlabelled")).path
    with ArtifactReader(out, kind="seeds") as r:
        changed = 0
        for image_id in ds.ids:
            got, exp = _on_dsrg_grid(r, ds, image_id), expected[image_id]
            differ = got != exp
            assert (got[differ] == 255).all()  # only two-cue pixels change, to unlabelled
            changed += int(differ.sum())
        assert changed > 0
    with pytest.raises(DgcnError, match="--dsrg-overlap"):
        seeds_stage.SeedsConfig(out=tmp_path / "x.h5", from_dsrg=pkl, dsrg_overlap="lower")


def test_index_keyed_dsrg_pickle_without_the_list_says_to_pass_it(tmp_path):
    data = _demo_ds(tmp_path)
    ds = data.build()
    pkl, lst = tmp_path / "cues.pickle", tmp_path / "input_list.txt"
    write_dsrg_cues(pkl, lst, ds.ids, num_classes=len(ds.class_names))
    with pytest.raises(DgcnError) as err:
        seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, from_dsrg=pkl))
    msg = str(err.value)
    assert "\n" not in msg and "--dsrg-list" in msg and "input_list.txt" in msg and "published code" in msg
    assert not list(tmp_path.glob("s.h5*"))
    with pytest.raises(DgcnError, match="goes with --from-dsrg"):
        seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, dsrg_list=lst, cams=tmp_path / "c.h5"))


def test_dsrg_images_missing_are_named_before_anything_is_written(tmp_path):
    data = _demo_ds(tmp_path)
    ds = data.build()
    pkl, lst = tmp_path / "cues.pickle", tmp_path / "input_list.txt"
    write_dsrg_cues(pkl, lst, ds.ids[1:], num_classes=len(ds.class_names))  # the first image has no cues
    with pytest.raises(DgcnError) as err:
        seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, from_dsrg=pkl, dsrg_list=lst))
    msg = str(err.value)
    assert "\n" not in msg and f"1 of {len(ds.ids)} images" in msg and ds.ids[0] in msg
    assert not list(tmp_path.glob("s.h5*"))
    # listed, but the pickle lacks its entry: the same line
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join(lines + [f"{ds.ids[0]}.jpg 999"]) + "\n")
    with pytest.raises(DgcnError, match=f"no cues for 1 of {len(ds.ids)} images.*{ds.ids[0]}"):
        seeds_stage.run(seeds_stage.SeedsConfig(out=tmp_path / "s.h5", data=data, from_dsrg=pkl, dsrg_list=lst))
    assert not list(tmp_path.glob("s.h5*"))


@pytest.mark.parametrize("text, fragment", [
    ("a.jpg\n", "expected 'IMAGE.jpg INDEX'"),
    ("a.jpg x\n", "expected 'IMAGE.jpg INDEX'"),
    ("a.jpg 0\n/JPEGImages/a.jpg 1\n", "listed twice"),
    ("a.jpg 0\nb.jpg 0\n", "index 0"),
])
def test_dsrg_list_errors(tmp_path, text, fragment):
    lst = tmp_path / "input_list.txt"
    lst.write_text(text)
    with pytest.raises(DgcnError, match=fragment) as err:
        seeds_stage.read_dsrg_list(lst)
    assert "input_list.txt:" in str(err.value)


def test_cli_seeds_from_dsrg_with_list(tmp_path):
    from typer.testing import CliRunner

    from dgcn_cli.app import app
    data = _demo_ds(tmp_path)
    ds = data.build()
    pkl, lst = tmp_path / "cues.pickle", tmp_path / "input_list.txt"
    expected = write_dsrg_cues(pkl, lst, ds.ids, num_classes=len(ds.class_names), labels={i: ds.labels(i) for i in ds.ids})
    base = ["seeds", "--dataset", "demo", "--data-root", str(data.data_root), "--split", "train",
            "--cache-dir", str(tmp_path / "cache"), "--from-dsrg", str(pkl), "--out", str(tmp_path / "s.h5")]
    r = CliRunner().invoke(app, base)
    assert r.exit_code != 0 and "--dsrg-list" in r.output
    r = CliRunner().invoke(app, [*base, "--dsrg-list", str(lst)])
    assert r.exit_code == 0, r.output
    with ArtifactReader(tmp_path / "s.h5", kind="seeds") as reader:
        for image_id in ds.ids:
            np.testing.assert_array_equal(_on_dsrg_grid(reader, ds, image_id), expected[image_id])


def test_cam_seeds_record_the_config_they_recorded_before_the_dsrg_options(tmp_path):
    """An interrupted seeds file of the earlier version must still resume: CAM seeds record
    (and fingerprint) the same keys as before --dsrg-list / --dsrg-overlap existed."""
    cfg = seeds_stage.SeedsConfig(out=tmp_path / "s.h5", cams=tmp_path / "c.h5", saliency=tmp_path / "sal.h5")
    assert set(seeds_stage._recorded_config(cfg)) == {
        "out", "data", "cams", "saliency", "fusion", "from_dsrg", "from_irn", "overwrite", "resume"}
    dsrg = seeds_stage.SeedsConfig(out=tmp_path / "s.h5", from_dsrg=tmp_path / "c.pickle")
    assert {"dsrg_list", "dsrg_overlap"} <= set(seeds_stage._recorded_config(dsrg))
