"""Per-image costs behind the README's time and memory estimates for a VOC run.

Run from the repository root:
    python benchmarks/estimate_voc.py [--gpu-step-ms 51]

Two kinds of figure, both measured by this script on the machine it runs on:

- **CPU work** (dense CRF at VOC image size, MB+ saliency, the graph cut at 41x41, the
  boundary-loss CRF at 41x41, a CAM item's size in HDF5): timed directly, median of a few
  calls on random-but-plausible inputs (a smooth random field, not noise, so the CRF and
  gzip see image-like data).
- **GPU work** (training steps, multi-scale inference): the floating-point operations of each
  network pass, counted with ``torch.utils.flop_counter`` on the meta device (no compute),
  turned into time with one measured reference: ``--gpu-step-ms``, the time of a DeepLab-v2
  ResNet-101 training step at batch 16, 321x321, bf16 (51 ms on one H100, measured for the
  project's method notes). Time = FLOPs x (reference ms / reference FLOPs): an estimate that
  assumes every pass runs at the reference step's FLOP rate.
- **GPU memory of a training step**: the bytes autograd saves for the backward pass
  (``saved_tensors_hooks``, on the meta device) plus weights, gradients and momentum, at fp32
  activations; bf16 autocast stores most activations at half that.

The estimates per stage are printed at the end for VOC's 10,582 train_aug, 1,464 train and
1,449 val images (average image 500x375, 1.5 classes per image).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from stages.core.cues.crf import BOUNDARY_CRF, CrfConfig, dense_crf  # noqa: E402
from stages.core.cues.saliency import compute_saliency  # noqa: E402
from stages.core.expanders import build_expander  # noqa: E402
from stages.core.nets import build_classifier, build_segmenter  # noqa: E402
from stages.core.units import duration  # noqa: E402

from bench_timing import median_time  # noqa: E402

H, W = 375, 500  # a typical VOC image
VOC = {"train_aug": 10582, "train": 1464, "val": 1449}
CLASSES_PER_IMAGE = 1.5
CPU = torch.device("cpu")


def smooth_field(rng: np.random.Generator, c: int, h: int, w: int) -> np.ndarray:
    """(c, h, w) in [0, 1]: low-resolution noise upsampled, image-like for CRF and gzip."""
    low = torch.from_numpy(rng.random((1, c, max(2, h // 32), max(2, w // 32)), dtype=np.float32))
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()


def fake_image(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
    return (smooth_field(rng, 3, h, w).transpose(1, 2, 0) * 255).astype(np.uint8)


def softmax_np(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(x * 8).softmax(0).numpy()


def cpu_costs(repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    image = fake_image(rng)
    small = fake_image(rng, 41, 41)
    probs21, probs3 = softmax_np(smooth_field(rng, 21, H, W)), softmax_np(smooth_field(rng, 3, H, W))
    probs_small = softmax_np(smooth_field(rng, 21, 41, 41))
    costs = {
        "crf_image_21": median_time(lambda i: dense_crf(image, probs21, CrfConfig()), CPU, repeats, 1),
        "crf_image_3": median_time(lambda i: dense_crf(image, probs3, CrfConfig()), CPU, repeats, 1),
        "crf_41_3": median_time(lambda i: dense_crf(small, probs_small[:3] / probs_small[:3].sum(0), BOUNDARY_CRF), CPU, repeats, 1),
        "saliency_image": median_time(lambda i: compute_saliency(image, "mbd"), CPU, repeats, 1),
    }
    costs["graphcut_image"] = _graphcut_cost(repeats)
    costs["cam_item_bytes"] = _cam_item_bytes(rng)
    return costs


def _graphcut_cost(repeats: int, channels: int = 8) -> float:
    """One image's graph cuts at 41x41: 2 present classes + background, K=9. With few feature
    channels the kNN is negligible, so this times graph building and max-flow, the part that
    stays on the CPU; on a GPU the kNN (counted in FLOPs below) runs there."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, channels, 41, 41, generator=g)
    probs = torch.randn(1, 21, 41, 41, generator=g).softmax(1)
    seeds = torch.full((1, 41, 41), 255, dtype=torch.long)
    seeds[0, :10], seeds[0, 15:25, 15:25], seeds[0, 30:, 30:] = 0, 3, 7
    present = torch.zeros(1, 21, dtype=torch.bool)
    present[0, [0, 3, 7]] = True
    with build_expander("graphcut") as exp:
        return median_time(lambda i: exp(feats, probs, seeds, present), CPU, repeats, 1)


def _cam_item_bytes(rng: np.random.Generator) -> float:
    """Bytes of one image's CAMs (float16, image size, gzip 4 + shuffle, as cams.h5 stores them)."""
    n = 8
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for i in range(n):
            cam = smooth_field(rng, 2, H, W).astype(np.float16)
            f.create_dataset(f"{i}/cam", data=cam, compression="gzip", compression_opts=4, shuffle=True)
    return len(buf.getvalue()) / n * (CLASSES_PER_IMAGE / 2)


def flops(model: torch.nn.Module, shape: tuple[int, ...], backward: bool) -> int:
    model = model.to("meta")
    x = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    return counter.get_total_flops()


def saved_bytes(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes autograd keeps for backward in one training forward (activations)."""
    model = model.to("meta").train()
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.empty(shape, device="meta"))
    return total


def param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def scaled_pass_flops(model_fn, scales: tuple[float, ...], flips: int) -> int:
    """Inference FLOPs of one VOC-sized image over ``scales`` (x2 with flips)."""
    total = 0
    for s in scales:
        total += flops(model_fn(), (1, 3, round(H * s), round(W * s)), backward=False)
    return total * flips


def gpu_figures() -> dict[str, float]:
    seg = lambda: build_segmenter("resnet101", 21, "none", None, head="largefov", freeze_bn=True)  # noqa: E731
    cls = lambda: build_classifier("resnet50", 20, "none", False)  # noqa: E731
    return {
        "seg_step": flops(seg(), (16, 3, 321, 321), backward=True),
        "cls_step": flops(cls(), (16, 3, 321, 321), backward=True),
        "cam_image": scaled_pass_flops(cls, (0.5, 1.0, 1.5, 2.0), flips=2),
        "seg_image": scaled_pass_flops(seg, (0.75, 1.0, 1.25), flips=1),
        # the kNN of a batch: |x|^2 + |y|^2 - 2xy over 1681 nodes of 1280 channels (layer1 + layer3)
        "knn_step": 16 * 2 * 1681 * 1681 * 1280,
        "seg_activations": saved_bytes(seg(), (16, 3, 321, 321)),
        "seg_params": param_bytes(seg()),
        "cls_activations": saved_bytes(cls(), (16, 3, 321, 321)),
        "cls_params": param_bytes(cls()),
    }


def estimates(cpu: dict[str, float], gpu: dict[str, float], step_ms: float, workers: int) -> list[tuple[str, str, str]]:
    """(stage, time, GPU memory) rows for the make voc pipeline's defaults."""
    per_flop = step_ms / 1000 / gpu["seg_step"]
    it = lambda n, epochs: n * epochs / 16  # noqa: E731  (iterations at batch 16)
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    train_mem = gpu["seg_activations"] / 2 + 4 * gpu["seg_params"]  # bf16 activations; weights, grads, momentum (+ fp32 copy)
    cls_mem = gpu["cls_activations"] / 2 + 4 * gpu["cls_params"]
    # the supervision of a step (graph cut and boundary CRF of 16 images) runs on `workers` CPU processes
    # (the step waits for it: added, not overlapped)
    sup = 16 * (cpu["graphcut_image"] + cpu["crf_41_3"]) / workers
    seg_train = it(VOC["train_aug"], 7) * ((gpu["seg_step"] + gpu["knn_step"]) * per_flop + sup)
    rows = [
        ("cam (train ResNet-50, 5 epochs)", duration(it(VOC["train_aug"], 5) * gpu["cls_step"] * per_flop), gib(cls_mem)),
        ("cam (CAMs of train_aug, 4 scales + flip)", duration(VOC["train_aug"] * gpu["cam_image"] * per_flop),
         f"{VOC['train_aug'] * cpu['cam_item_bytes'] / 2**30:.1f} GiB on disk"),
        ("saliency-bg (MB+, CPU)", duration(VOC["train_aug"] * cpu["saliency_image"]), "-"),
        ("train (DGCN, 7 epochs)", duration(seg_train), gib(train_mem)),
        ("graphcut-label (train)", duration(VOC["train"] * (gpu["seg_image"] / 3 * per_flop + cpu["graphcut_image"])), "small"),
        ("infer val (3 scales + CRF)", duration(VOC["val"] * (gpu["seg_image"] * per_flop + cpu["crf_image_21"] / workers)), "small"),
        ("retrain: label train_aug (3 scales + CRF)", duration(VOC["train_aug"] * (gpu["seg_image"] * per_flop + cpu["crf_image_3"])), "small"),
        # DSRG's regime: 19 epochs at batch 10, a step costing 10/16 of the batch-16 reference
        ("retrain: train 19 epochs at batch 10 (no graph cut, no CRF)",
         duration(VOC["train_aug"] * 19 / 10 * step_ms / 1000 * 10 / 16), gib(gpu["seg_activations"] / 2 * 10 / 16 + 4 * gpu["seg_params"])),
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-step-ms", type=float, default=51.0,
                    help="measured ms of a ResNet-101 DeepLab training step, batch 16, 321x321 (default: H100, bf16)")
    ap.add_argument("--workers", type=int, default=4, help="CRF / graph-cut worker processes (make voc: PAPER_WORKERS)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    cpu = cpu_costs(args.repeats)
    gpu = gpu_figures()
    print("measured on this machine (CPU, one process; medians):")
    print(f"  dense CRF, {W}x{H}, 21 labels, 10 iterations  {1000 * cpu['crf_image_21']:8.0f} ms")
    print(f"  dense CRF, {W}x{H}, 3 labels                  {1000 * cpu['crf_image_3']:8.0f} ms")
    print(f"  boundary-loss CRF, 41x41, 3 labels            {1000 * cpu['crf_41_3']:8.1f} ms")
    print(f"  graph cuts, 41x41, 3 classes, K=9 (no kNN)    {1000 * cpu['graphcut_image']:8.1f} ms")
    print(f"  MB+ saliency, {W}x{H}                          {1000 * cpu['saliency_image']:8.0f} ms")
    print(f"  CAM item in HDF5 ({CLASSES_PER_IMAGE} classes, float16)      {cpu['cam_item_bytes'] / 1024:8.0f} KiB")
    print("counted (FLOPs, meta device):")
    for key in ("seg_step", "cls_step", "cam_image", "seg_image", "knn_step"):
        print(f"  {key:<16} {gpu[key] / 1e12:8.3f} TFLOP")
    print(f"  DeepLab-101 step: activations {gpu['seg_activations'] / 2**30:.1f} GiB (fp32), weights {gpu['seg_params'] / 2**20:.0f} MiB")
    print(f"\nestimates for VOC (GPU time scaled from a {args.gpu_step_ms:g} ms reference step; {args.workers} CPU workers):")
    for stage, t, mem in estimates(cpu, gpu, args.gpu_step_ms, args.workers):
        print(f"  {stage:<48} {t:>8}   {mem}")


if __name__ == "__main__":
    main()
