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


# ----------------------------------------------------- training-stage fixtures
# A 16-image demo split (four batches of 4), seeds written by hand from the GT
# masks, and a checkpoint trained on them for a few seconds.

TRAIN_DEMO = DemoConfig(n_train=16, n_val=8, size=64)
SEED_BLOCK = 8  # the tiny network's stride: block seeds survive resizing to the score map and back


def block_seeds(mask):
    """Seeds constant over 8x8 blocks: a block gets class c when all its pixels
    are c in the mask (the mask eroded to whole blocks) and, for the
    background, when it is not next to an object; else 255."""
    import numpy as np

    b = SEED_BLOCK
    h, w = mask.shape
    gh, gw = h // b, w // b
    blocks = mask[: gh * b, : gw * b].reshape(gh, b, gw, b).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    pure = (blocks == blocks[..., :1]).all(-1)
    cls = np.where(pure, blocks[..., 0], 255).astype(np.uint8)
    pad = np.pad(cls, 1, constant_values=0)
    far = np.ones_like(pure)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            far &= pad[dy : dy + gh, dx : dx + gw] == 0
    grid = np.where((cls == 0) & ~far, 255, cls).astype(np.uint8)
    out = np.full(mask.shape, 255, dtype=np.uint8)
    out[: gh * b, : gw * b] = np.kron(grid, np.ones((b, b), dtype=np.uint8))
    return out


@pytest.fixture(scope="session")
def train_demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-train / 8-val, 64 px demo dataset for the training stages. Read-only by convention."""
    return write_demo_dataset(tmp_path_factory.mktemp("train-demo") / "demo", TRAIN_DEMO)


@pytest.fixture(scope="session")
def train_data(train_demo_root: Path):
    from stages.core.datasets import DataConfig

    return DataConfig(dataset="demo", data_root=train_demo_root, split="train")


@pytest.fixture(scope="session")
def train_seeds(tmp_path_factory: pytest.TempPathFactory, train_data) -> Path:
    """A seeds artifact for ``train_data``: eroded GT masks as 8x8 blocks (see ``block_seeds``)."""
    from stages.core.io.artifacts import ArtifactMeta, ArtifactWriter

    ds = train_data.build()
    path = tmp_path_factory.mktemp("train-seeds") / "seeds.h5"
    meta = ArtifactMeta(kind="seeds", dataset=ds.name, split=ds.split, class_names=ds.class_names,
                        extra={"source": "eroded ground truth, 8x8 blocks (tests)"})
    with ArtifactWriter(path, meta) as w:
        for image_id in ds.ids:
            w.write(image_id, label=block_seeds(ds.load_mask(image_id)))
        return w.finish()


@pytest.fixture(scope="session")
def make_train_config(train_data, train_seeds):
    """``make_train_config(out, **overrides)``: the tiny CPU training run of these tests."""
    from stages.core.train.fit import OptimConfig, RunConfig
    from stages.core.train.segmenter import ModelConfig
    from stages.train import TrainConfig

    def make(out: Path, *, resume: bool = False, overwrite: bool = False, optim: dict | None = None, **kw) -> TrainConfig:
        opts = {**dict(epochs=2, batch_size=4, crop=64, lr=0.01, warmup_iters=2, ckpt_every=2), **(optim or {})}
        # the four-branch head: in these 8 iterations it learns foreground, the single-branch
        # largefov head (the default) does not yet (measured: 16 vs 0 of 16 images)
        args = dict(seeds=train_seeds, data=train_data, model=ModelConfig("tiny", "none", head="aspp"),
                    boundary_loss="none", crf_workers=0)
        args.update(kw)
        return TrainConfig(run=RunConfig(out=Path(out), device="cpu", resume=resume, overwrite=overwrite),
                           optim=OptimConfig(**opts), **args)

    return make


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, make_train_config) -> Path:
    """final.pt of a 2-epoch graph-cut training run on ``train_data`` (a few seconds on the CPU)."""
    from stages import train

    return train.run(make_train_config(tmp_path_factory.mktemp("trained") / "run")).path


def interrupted_training(out: Path, make_train_config, at_step: int = 7) -> None:
    """Run the tiny training of ``make_train_config`` into ``out`` and stop it with Ctrl-C at
    its ``at_step``-th step (with 4 iterations an epoch and checkpoints every 2, last.pt then
    holds iteration ``at_step - 1``), as an interrupted run leaves its folder."""
    from stages import train
    from stages.core.train import loop

    real, calls = loop.apply_lr, [0]

    def stop(optimizer, lr):
        calls[0] += 1
        if calls[0] == at_step:
            raise KeyboardInterrupt
        real(optimizer, lr)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "apply_lr", stop)
        with pytest.raises(KeyboardInterrupt):
            train.run(make_train_config(out))
