"""Shared fixtures: a throw-away cache, a small demo dataset, the real coco128-voc photos.

Nothing a test does may write to ``~/.cache``: ``DGCN_CACHE`` points at a
session temporary folder for the whole run, and ``cache_dir`` gives a test its
own empty one.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from stages.core.datasets.demo import DemoConfig, write_demo_dataset

COCO128_VOC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128-voc"

# The size of the shared demo dataset (``demo_root``).
SMALL_DEMO = DemoConfig(n_train=12, n_val=6, size=64)


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point DGCN_CACHE at a session temp folder so no test touches the user's cache."""
    old = os.environ.get("DGCN_CACHE")
    os.environ["DGCN_CACHE"] = str(tmp_path_factory.mktemp("dgcn-session-cache"))
    yield
    if old is None:
        os.environ.pop("DGCN_CACHE", None)
    else:
        os.environ["DGCN_CACHE"] = old


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder for this test; DGCN_CACHE points at it while the test runs."""
    path = tmp_path / "cache"
    path.mkdir()
    monkeypatch.setenv("DGCN_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset in VOC layout (12 train, 6 val, 64 px). Read-only by convention."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo-data") / "demo", SMALL_DEMO)


@pytest.fixture(scope="session")
def coco128_voc_path() -> Path:
    """Path of ../shared/data/coco128-voc (may not exist: see ``coco128_voc``)."""
    return COCO128_VOC


@pytest.fixture(scope="session")
def coco128_voc(coco128_voc_path: Path) -> Path:
    """The 97 real photos in VOC layout; the test is skipped when the folder is absent."""
    if not (coco128_voc_path / "JPEGImages").is_dir():
        pytest.skip(f"real-photo data not found at {coco128_voc_path}")
    return coco128_voc_path
