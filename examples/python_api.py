"""The dgcn chain driven from Python, without the CLI.

    .venv/bin/python examples/python_api.py [WORK_DIR]      (default /tmp/dgcn-api)

Writes a small demo dataset, then runs cam -> saliency-bg -> seeds -> train
(graph-cut expander) -> infer -> evaluate, each stage a ``run(Config)`` call;
prints the seeds' precision/coverage on train and the predictions' mIoU on val.
Settings are tiny (a small network from scratch, 64-px images, 2 epochs, a
single test scale) so it finishes in a minute or two on a CPU; the numbers are
a smoke test, not a result. The ``__main__`` guard is required: the CRF and
data-loader worker pools start processes with ``spawn``, which re-imports this file.
"""
from __future__ import annotations

import sys
from pathlib import Path

from stages import cam, evaluate, infer, saliency_bg, seeds, train
from stages.core.datasets import DataConfig
from stages.core.cues.seeding import FusionConfig
from stages.core.datasets.demo import DemoConfig, write_demo_dataset
from stages.core.train.classifier import ClassifierConfig
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.segmenter import ModelConfig


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = write_demo_dataset(out / "data", DemoConfig(n_train=32, n_val=16, size=64), overwrite=True)
    train_data = DataConfig(dataset="demo", data_root=root, split="train")
    val_data = DataConfig(dataset="demo", data_root=root, split="val")
    device = "cpu"

    # 1. classifier on image-level labels, then CAMs of the training split
    (cams_train,) = cam.run(cam.CamConfig(
        run=RunConfig(out=out / "cam", device=device, overwrite=True), data=train_data,
        model=ClassifierConfig(backbone="tiny", weights="none"),
        optim=OptimConfig(epochs=2, batch_size=8, crop=64, lr=0.05, warmup_iters=2, scale_range=(0.7, 1.3)),
        scales=(1.0,),
    )).paths
    print(f"cam:      {cams_train}")

    # 2. saliency for the background cue (MB+, computed)
    saliency = saliency_bg.run(saliency_bg.SaliencyConfig(
        out=out / "saliency_train.h5", data=train_data, method="mbd", overwrite=True,
    )).path
    print(f"saliency: {saliency}")

    # 3. seeds: confident CAM pixels as foreground, non-salient pixels as background
    seeds_train = seeds.run(seeds.SeedsConfig(
        out=out / "seeds_train.h5", data=train_data, cams=cams_train, saliency=saliency,
        fusion=FusionConfig(fg_thresh=0.3, bg_source="saliency", bg_sal_thresh=0.1), overwrite=True,
    )).path
    print(f"seeds:    {seeds_train}")
    seed_report = evaluate.run(evaluate.EvaluateConfig(source=seeds_train, data=train_data)).details

    # 4. segmentation network trained on the seeds, expanded by graph cut every iteration
    checkpoint = train.run(train.TrainConfig(
        run=RunConfig(out=out / "train", device=device, seed=0, amp=False, overwrite=True),
        seeds=seeds_train,
        data=train_data,
        # the four-branch head: LargeFOV's rate 12 is wider than this net's 8x8 score maps
        model=ModelConfig(backbone="tiny", weights="none", head="aspp"),
        optim=OptimConfig(epochs=2, batch_size=8, crop=64, lr=0.05, warmup_iters=2),
        expander="graphcut",
        boundary_loss="none",  # "crf" adds the paper's boundary loss (slower)
    )).path
    print(f"train:    {checkpoint}")

    # 5. predictions for the val split (single scale + flip, no CRF, to stay fast)
    summary = infer.run(infer.InferConfig(
        checkpoint=checkpoint, out=out / "pred", data=val_data,
        scales=(1.0,), flip=True, crf=False, device=device, overwrite=True,
    )).details
    print(f"infer:    {summary.path} ({summary.done} of {summary.total} images predicted, {len(summary.failed)} failed)")

    # 6. evaluation against the val ground truth
    pred_report = evaluate.run(evaluate.EvaluateConfig(
        source=summary.path, data=val_data, json_out=out / "eval_pred_val.json",
    )).details

    s, p = seed_report.metrics, pred_report.metrics
    print(f"seeds (train): precision {100 * s.precision:.1f}%  coverage {100 * s.coverage:.1f}%")
    print(f"pred  (val):   mIoU {100 * p.miou:.1f}%  pixel acc {100 * p.pixel_acc:.1f}%")
    for name, iou in zip(p.class_names, p.iou):
        print(f"    {name:<12} IoU {100 * iou:5.1f}%")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/dgcn-api"))
