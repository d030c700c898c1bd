"""Stage throughput in images per second, each against a plain forward pass measured in the same run.

Run from the repository root:
    python benchmarks/bench_throughput.py                       # CPU, EfficientNet-Lite0, random weights
    python benchmarks/bench_throughput.py --device cuda --backbone resnet101 --repeats 5

Images are 240x320 (the horse photos' size) of random content, two classes
(background, horse) as in ``make horse``; training batches are crops of 225
(``--batch-size``, default 8, the horse pipeline's). The baseline is a plain
forward pass of the segmentation network (``build_segmenter``, eval mode, no
grad, PyTorch's default contiguous NCHW layout) on a batch of full images; every
other line is its images/s and the ratio to that baseline:
  - the same forward with the network placed by ``stages.core.device.place``
    (channels-last weights, as every stage runs it);
  - ``cam``: one classifier training step (multilabel soft margin loss, SGD), with
    and without ``freeze_backbone``; CAM extraction (``multiscale_cam``) of one
    image at the stage's default scales and at the horse pipeline's;
  - ``train``: loading a batch (the real ``WeakTrainSet`` / ``epoch_loader`` over
    JPEGs written to a temporary folder, seeds as label maps), and the real step
    (``stages.train.make_loss``: forward, expander, seeding loss, boundary-loss
    CRF in ``crf_workers`` processes; backward, SGD step) with the graph cut and
    with no expander;
  - ``infer``: ``predict_probs`` of one image at the test scales + flip, without
    and with the full-size dense CRF that ``dgcn infer`` applies.
The last line compares forward+backward of the bare backbone (train mode) with
channels-last weights against the default layout, the reason ``place`` exists.
Times are medians over ``--repeats`` after ``--warmup`` untimed runs. The process
gets the ``dgcn`` command's settings (``import dgcn_cli``: OpenMP threads wait
passively); with GNU OpenMP's spinning default, on 2 cores shared with other jobs,
one contiguous-layout backward of the backbone took anywhere from 4 s to 300 s.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# first: the process settings the dgcn command sets before torch loads (OMP_WAIT_POLICY)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import dgcn_cli  # noqa: E402,F401
from stages.cam import CamConfig  # noqa: E402
from stages.core.cues.crf import BOUNDARY_CRF, CrfConfig, CrfPool  # noqa: E402
from stages.core.datasets import WeakDataset  # noqa: E402
from stages.core.device import place  # noqa: E402
from stages.core.expanders import build_expander  # noqa: E402
from stages.core.nets import build_backbone, build_segmenter  # noqa: E402
from stages.core.nets.inputs import to_tensor  # noqa: E402
from stages.core.predict.classifier import multiscale_cam  # noqa: E402
from stages.core.predict.segmenter import TEST_SCALES, predict_probs  # noqa: E402
from stages.core.train.batches import WeakTrainSet, epoch_loader  # noqa: E402
from stages.core.train.classifier import ClassifierConfig, classifier_task  # noqa: E402
from stages.core.train.fit import OptimConfig, RunConfig, make_optimizer, train_step  # noqa: E402
from stages.core.train.segmenter import ModelConfig  # noqa: E402
from stages.train import TrainConfig, make_loss  # noqa: E402

from bench_timing import median_time  # noqa: E402  (benchmarks/, the script's own folder)

HEIGHT, WIDTH = 240, 320
CROP = 225
CLASS_NAMES = ("background", "horse")
HORSE_CAM_SCALES = (1.0, 1.5)


def random_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(n)]


def seed_maps(image_id: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Label maps as ``LazyLabelMaps`` gives them: one uint8 seed map at the image's size,
    255 unlabelled, two 50x50 blocks each of background and horse."""
    rng = np.random.default_rng([int(image_id.split("_")[-1]), 1])
    m = np.full(size, 255, dtype=np.uint8)
    for c in (0, 1, 0, 1):
        y, x = rng.integers(0, size[0] - 50), rng.integers(0, size[1] - 50)
        m[y : y + 50, x : x + 50] = c
    return [m]


def train_batches(folder: Path, n_batches: int, batch_size: int, seed: int = 0) -> tuple[list[dict], float]:
    """``n_batches`` batches (one epoch each) from the real ``WeakTrainSet`` over JPEGs of
    random content, and the median seconds a batch took to load."""
    ids = tuple(f"horse_{i:03d}" for i in range(batch_size))
    paths = {}
    for image_id, im in zip(ids, random_images(batch_size, seed)):
        paths[image_id] = folder / f"{image_id}.jpg"
        Image.fromarray(im).save(paths[image_id], quality=90)
    weak = WeakDataset(name="bench", split="train", class_names=CLASS_NAMES, ids=ids,
                       image_paths=paths, image_labels={i: (1,) for i in ids})
    optim = OptimConfig(batch_size=batch_size, crop=CROP)
    train_set = WeakTrainSet(weak, optim.crop, seed, optim.scale_range, label_maps=seed_maps, keep_image=True)
    batches, times = [], []
    for epoch in range(n_batches):
        t0 = time.perf_counter()
        batches.extend(epoch_loader(train_set, batch_size=batch_size, seed=seed, epoch=epoch))
        times.append(time.perf_counter() - t0)
    return batches, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--batch-size", type=int, default=8, help="images per forward batch and training step")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    device = torch.device(args.device)
    bs, warm, reps = args.batch_size, args.warmup, args.repeats
    n_classes = len(CLASS_NAMES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), device {device}, backbone "
          f"{args.backbone} (weights {args.weights}), images {HEIGHT}x{WIDTH}, {n_classes} classes, "
          f"batch {bs}, training crop {CROP}; median of {reps} after {warm} warm-up")
    base: list[float] = []  # the plain forward's images per second, once measured

    def report(name: str, rate: float) -> None:  # each line as soon as it is measured
        if not base:
            base.append(rate)
        print(f"  {name + ':':42} {rate:7.2f} img/s = {rate / base[0]:5.2f}x plain forward", flush=True)

    def measure(name: str, fn, images: int) -> None:
        report(name, images / median_time(fn, device, reps, warmup=warm))

    images = random_images(bs, seed=1)
    full = torch.stack([to_tensor(im) for im in images[:bs]]).to(device)

    # 1-2: plain forward (contiguous NCHW) and the same network placed channels-last
    torch.manual_seed(0)
    seg = build_segmenter(args.backbone, n_classes, args.weights).eval()
    placed = place(copy.deepcopy(seg), device).eval()
    seg = seg.to(device)
    with torch.no_grad():
        measure("plain forward (contiguous NCHW)", lambda i: seg(full), bs)
        measure("forward, placed (channels-last)", lambda i: placed(full), bs)

    # 3a: the cam stage's classifier step: the trainer's own step, loss and optimiser
    cam_cfg = CamConfig(run=RunConfig(out=Path("unused"), device=args.device))  # its optimiser settings and scales
    for frozen in (False, True):
        task = classifier_task(ClassifierConfig(args.backbone, args.weights, freeze_backbone=frozen))
        torch.manual_seed(0)
        clf = place(task.build(n_classes), device).train()
        opt = make_optimizer(clf, cam_cfg.optim)
        batch = {"image": torch.rand(bs, 3, CROP, CROP), "labels": torch.ones(bs, n_classes - 1)}
        measure(f"cam: classifier step{', frozen backbone' if frozen else ''}",
                lambda i: train_step(clf, opt, task.loss, batch, device, i, cam_cfg.run.amp), bs)

    # 3b: CAM extraction of one full image, at the stage's default scales and the horse pipeline's
    clf.eval()
    for scales in (cam_cfg.scales, HORSE_CAM_SCALES):
        measure(f"cam: CAMs at {','.join(f'{s:g}' for s in scales)} + flip",
                lambda i: multiscale_cam(clf, images[0], [1], scales, device), 1)

    # 4: the train stage's step, its loss built by the trainer itself
    with tempfile.TemporaryDirectory() as tmp:
        batches, t_load = train_batches(Path(tmp), warm + reps, bs)
    report("train: load a batch (WeakTrainSet)", bs / t_load)
    run_cfg = RunConfig(out=Path("unused"), device=args.device)
    pool = CrfPool(TrainConfig(run=run_cfg, seeds=Path("unused")).crf_workers, BOUNDARY_CRF)
    try:
        for name in ("graphcut", "none"):
            cfg = TrainConfig(run=run_cfg, seeds=Path("unused"), expander=name,
                              model=ModelConfig(args.backbone, args.weights), optim=OptimConfig(batch_size=bs, crop=CROP))
            torch.manual_seed(0)
            model = place(cfg.model.build(n_classes), device).train()
            opt = make_optimizer(model, cfg.optim)
            with build_expander(cfg.expander, **dict(cfg.expander_options)) as expander:
                loss_fn = make_loss(cfg, expander, pool)
                measure(f"train step {name}", lambda i: train_step(model, opt, loss_fn, batches[i], device, i, cfg.run.amp), bs)
    finally:
        pool.close()

    # 5: infer, one image at the test scales + flip, without and with the full-size CRF
    with torch.inference_mode(), CrfPool(0) as crf:
        measure(f"infer: {','.join(f'{s:g}' for s in TEST_SCALES)} + flip",
                lambda i: predict_probs(placed, images[0], TEST_SCALES, True, device), 1)
        measure("infer: + dense CRF",
                lambda i: crf.submit(images[0], predict_probs(placed, images[0], TEST_SCALES, True, device),
                                     CrfConfig()).result(), 1)

    # channels-last vs contiguous forward+backward of the bare backbone (train mode)
    torch.manual_seed(0)
    bb = build_backbone(args.backbone, args.weights).train()
    bb_cl = place(copy.deepcopy(bb), device)
    bb = bb.to(device)
    x = torch.rand(bs, 3, CROP, CROP, device=device)
    rates = []
    for net in (bb, bb_cl):
        def fwd_bwd(i: int) -> None:
            net.zero_grad(set_to_none=True)
            net(x)[net.out_layer].float().sum().backward()

        rates.append(bs / median_time(fwd_bwd, device, reps, warmup=warm))
    print(f"backbone forward+backward, batch {bs} at {CROP}x{CROP}: channels-last {rates[1]:.2f} img/s, "
          f"contiguous {rates[0]:.2f} img/s: {rates[1] / rates[0]:.2f}x")


if __name__ == "__main__":
    main()
