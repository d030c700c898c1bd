"""Time one DGCN training step with each expander, against the plain seeded step.

Run from the repository root:
    python benchmarks/bench_train_step.py                       # CPU: tiny backbone
    python benchmarks/bench_train_step.py --device cuda --backbone resnet101 --weights none

A batch of random images (default 16 at 321x321, so 41x41 score maps) with
random seeds and 1-3 present classes out of 20 goes through the trainer's own step
(``stages.core.train.fit.train_step``: autocast, backward, SGD step) with the train
stage's own loss (``stages.train.make_loss``: forward, the expander, the seeding loss). The baseline is the same step with the ``none``
expander (seeds as they are), measured in the same run; the ratio column is
time / baseline. The boundary-loss CRF is off (``--crf`` adds it, and lets
``dsrg`` grow on its CRF-refined probabilities as it does in training: DSRG's own
CRF, U = -p, a second CRF per image, and ``dsrg/neglog`` reusing the boundary loss's
Q, no second CRF), so by default the table isolates what the expander costs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stages.core.cues.crf import BOUNDARY_CRF, CrfPool  # noqa: E402
from stages.core.expanders import build_expander  # noqa: E402
from stages.core.train.fit import RunConfig, train_step  # noqa: E402
from stages.core.train.segmenter import ModelConfig  # noqa: E402
from stages.train import TrainConfig, make_loss  # noqa: E402

from bench_timing import median_time  # noqa: E402  (benchmarks/, the script's own folder)

NUM_CLASSES = 21


def make_batch(batch: int, crop: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, crop, crop, generator=g)
    present = torch.zeros(batch, NUM_CLASSES, dtype=torch.bool)
    present[:, 0] = True
    seeds = torch.full((batch, crop, crop), 255, dtype=torch.long)
    for b in range(batch):
        classes = torch.randperm(NUM_CLASSES - 1, generator=g)[: int(torch.randint(1, 4, (1,), generator=g))] + 1
        present[b, classes] = True
        for c in [0, *classes.tolist()]:
            y, x = torch.randint(0, crop - 40, (2,), generator=g).tolist()
            seeds[b, y : y + 40, x : x + 40] = c
    raw = (images.permute(0, 2, 3, 1) * 255).to(torch.uint8)
    return {"image": images.to(device), "map0": seeds.to(device), "labels": present[:, 1:].float(), "raw": raw}


def time_steps(model, opt, loss_fn, batch, device, steps: int) -> float:
    # one untimed step first: it pays for allocations and pool start-up
    return median_time(lambda i: train_step(model, opt, loss_fn, batch, device, i), device, steps, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=321)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0, help="graph-cut solver processes")
    ap.add_argument("--crf", action="store_true", help="also run the boundary-loss CRF (in --workers processes)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ModelConfig(args.backbone, args.weights).build(NUM_CLASSES).to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    batch = make_batch(args.batch, args.crop, device)
    pool = CrfPool(args.workers, BOUNDARY_CRF) if args.crf else None
    cfg = TrainConfig(run=RunConfig(out=Path("unused")), seeds=Path("unused"),
                      boundary_loss="crf" if args.crf else "none")
    rows = []
    try:
        runs = [("none", "none", {}), ("dsrg", "dsrg", {"refined": args.crf})]
        if args.crf:
            runs.append(("dsrg/neglog", "dsrg", {"refine_unary": "neglog"}))
        runs += [("labelprop", "labelprop", {}), ("graphcut", "graphcut", {"workers": args.workers})]
        for label, name, opts in runs:
            with build_expander(name, **opts) as exp:
                rows.append((label, time_steps(model, opt, make_loss(cfg, exp, pool), batch, device, args.steps)))
    finally:
        if pool is not None:
            pool.close()
    base = rows[0][1]
    print(f"training step, {args.backbone} on {device}, batch {args.batch} at {args.crop}x{args.crop}"
          f"{' + CRF boundary loss' if args.crf else ''} (median of {args.steps}; ratio vs expander none)")
    for name, t in rows:
        print(f"  expander {name:<11} {1000 * t:9.1f} ms  {t / base:5.2f}x")


if __name__ == "__main__":
    main()
