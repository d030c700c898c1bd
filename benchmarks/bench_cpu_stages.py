"""The CPU stages that run in worker processes, each against itself in the main process,
measured in the same run: ``saliency-bg`` with ``--workers`` 0 (the baseline) and 2, and
``retrain``'s labelling (the teacher's multi-scale test, then the dense CRF over the image's
own classes) with ``--crf-workers`` 0 (the baseline) and 1.

Run from the repository root (``make bench`` runs the first):
    python benchmarks/bench_cpu_stages.py --checkpoint runs/demo/graphcut-s0/train/final.pt \\
        --dataset demo --data-root runs/demo/data
    python benchmarks/bench_cpu_stages.py --checkpoint runs/horse/runs/graphcut-s0/train/final.pt \\
        --dataset voc --data-root ../horse-voc --images 96

Both stages write the same artifact whatever the workers (``tests/test_parallel_stages.py``);
this prints the seconds of each and the ratio to its baseline. Times are the median of
``--repeats`` runs, alternating baseline and workers, so a drifting machine load hits both.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dgcn_cli  # noqa: E402,F401  (the dgcn command's process settings: OpenMP threads wait passively)
from stages import retrain, saliency_bg  # noqa: E402
from stages.core.datasets import DataConfig  # noqa: E402
from stages.core.train.fit import RunConfig  # noqa: E402


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def saliency(data: DataConfig, workers: int, tmp: Path) -> Callable[[], object]:
    cfg = saliency_bg.SaliencyConfig(out=tmp / f"sal_{workers}.h5", data=data, workers=workers, overwrite=True)
    return lambda: saliency_bg.run(cfg)


def labelling(data: DataConfig, checkpoint: Path, n: int, crf_workers: int, tmp: Path) -> Callable[[], object]:
    weak = data.build().weak()
    weak = dataclasses.replace(weak, ids=weak.ids[:n])
    cfg = retrain.RetrainConfig(run=RunConfig(out=tmp / f"retrain_{crf_workers}", device="cpu", overwrite=True),
                                data=data, checkpoint=checkpoint, crf_workers=crf_workers)
    return lambda: retrain.make_pseudo_labels(cfg, weak)


def compare(name: str, baseline: Callable[[], object], other: Callable[[], object], repeats: int, what: str) -> None:
    base, new = [], []
    for _ in range(repeats):
        base.append(seconds(baseline))
        new.append(seconds(other))
    b, o = statistics.median(base), statistics.median(new)
    print(f"{name:<44} baseline {b:7.1f} s   {what} {o:7.1f} s   {b / o:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="a trained segmentation checkpoint (the teacher)")
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=48, help="images labelled per run (saliency: the whole split)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = DataConfig(args.dataset, args.data_root, args.split)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        compare(f"saliency-bg {args.dataset}/{args.split} (workers 0 | 2)", saliency(data, 0, tmp),
                saliency(data, 2, tmp), args.repeats, "workers 2")
        compare(f"retrain labelling, {args.images} images (crf-workers 0 | 1)",
                labelling(data, args.checkpoint, args.images, 0, tmp),
                labelling(data, args.checkpoint, args.images, 1, tmp), args.repeats, "crf-workers 1")


if __name__ == "__main__":
    main()
