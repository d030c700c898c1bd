import time

import numpy as np
import pytest
from PIL import Image

from stages.core.cues.saliency import (
    SALIENCY,
    compute_saliency,
    load_saliency_png,
    mbd_saliency,
    mbd_transform,
)
from stages.core.errors import DgcnError


def object_on_clutter(h=120, w=160, seed=0):
    """A red ellipse in the middle of a noisy, blotchy green background."""
    rng = np.random.default_rng(seed)
    base = np.array([60, 120, 60], np.float32)
    blotches = np.kron(rng.normal(0, 18, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    image = base + blotches + rng.normal(0, 10, (h, w, 3))
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 5)) ** 2 <= 1.0
    image[inside] = np.array([210, 40, 40]) + rng.normal(0, 10, (inside.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), inside


def test_registry_lists_methods():
    assert "mbd" in SALIENCY.names()
    assert "border_contrast" in SALIENCY.names()
    with pytest.raises(ValueError, match="mbd"):
        compute_saliency(np.zeros((8, 8, 3), np.uint8), "no_such_method")


@pytest.mark.parametrize("name", SALIENCY.names())
def test_object_is_more_salient_than_clutter(name):
    image, inside = object_on_clutter()
    sal = compute_saliency(image, name)
    assert sal[inside].mean() - sal[~inside].mean() > 0.4


@pytest.mark.parametrize("name", SALIENCY.names())
@pytest.mark.parametrize("shape", [(375, 500), (61, 23), (5, 7), (1, 9)])
def test_shape_range_dtype(name, shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    sal = SALIENCY.get(name)(image)
    assert sal.shape == shape and sal.dtype == np.float32
    assert np.all(np.isfinite(sal)) and sal.min() >= 0.0 and sal.max() <= 1.0


@pytest.mark.parametrize("name", SALIENCY.names())
def test_uniform_image_has_no_salient_pixels(name):
    sal = SALIENCY.get(name)(np.full((40, 50, 3), 128, np.uint8))
    assert np.all(np.isfinite(sal)) and sal.max() == 0.0


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError):
        mbd_saliency(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        mbd_saliency(np.zeros((10, 10, 3), np.float32))


def test_mbd_transform_values():
    # A 5 in the middle of a ring of 1s inside a 0 border: every border path
    # to the ring spans 0..1, to the centre 0..5.
    img = np.zeros((5, 5), np.float32)
    img[1:4, 1:4] = 1.0
    img[2, 2] = 5.0
    d = mbd_transform(img[..., None])
    expected = np.zeros((5, 5), np.float32)
    expected[1:4, 1:4] = 1.0
    expected[2, 2] = 5.0
    np.testing.assert_allclose(d, expected)


def test_mbd_transform_follows_bent_paths():
    # A corridor of 0s in a wall of 10s: in at the top, down, right, then
    # back up. The end of the corridor is one wall pixel from the top
    # border, so only the three-segment path reaches it with barrier 0.
    img = np.full((9, 9), 10.0, np.float32)
    img[0, 1] = 0.0
    img[1:8, 1] = 0.0
    img[7, 1:8] = 0.0
    img[2:8, 7] = 0.0
    d = mbd_transform(img[..., None])
    np.testing.assert_array_equal(d[img == 0], 0.0)
    img[7, 4] = 10.0  # block the corridor: the end is now behind a barrier of 10
    d = mbd_transform(img[..., None])
    assert d[2, 7] == 10.0 and d[7, 3] == 0.0


def test_time_on_a_voc_sized_image(record_property):
    image, _ = object_on_clutter(375, 500)
    for name in SALIENCY.names():
        SALIENCY.get(name)(image)  # first call pays imports and allocation
        t0 = time.perf_counter()
        SALIENCY.get(name)(image)
        dt = time.perf_counter() - t0
        record_property(f"seconds_{name}_500x375", dt)
        print(f"saliency {name}: {dt:.3f} s on 500x375")


def test_load_saliency_png(tmp_path):
    arr = np.array([[0, 128], [255, 64]], np.uint8)
    Image.fromarray(arr, mode="L").save(tmp_path / "grey.png")
    got = load_saliency_png(tmp_path / "grey.png")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, arr / 255.0, atol=1e-6)

    Image.fromarray(np.repeat(arr[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(load_saliency_png(tmp_path / "rgb.png"), arr / 255.0, atol=1e-6)

    arr16 = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(arr16).save(tmp_path / "deep.png")
    np.testing.assert_allclose(load_saliency_png(tmp_path / "deep.png"), arr16 / 65535.0, atol=1e-6)


def test_load_saliency_png_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DgcnError, match="bad.png"):
        load_saliency_png(bad)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DgcnError):
        load_saliency_png(truncated)
    with pytest.raises(DgcnError, match="not found"):
        load_saliency_png(tmp_path / "missing.png")
