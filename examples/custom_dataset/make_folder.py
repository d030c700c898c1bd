"""Write a small dataset in dgcn's ``folder`` layout, the way a user would have their own data.

    python examples/custom_dataset/make_folder.py OUT [--n-train 16] [--n-val 8]

The pictures come from the synthetic demo generator (so the example needs no
download), but they are written as plain files, not in VOC layout:

    OUT/classes.txt      apple, bell, coin, drum, egg (one per line)
    OUT/images/*.jpg     every image, train and val together
    OUT/train.csv        image,labels   (labels: class names separated by spaces)
    OUT/val.csv          image,labels
    OUT/masks/*.png      palette PNGs of class ids, for the val images only:
                         only `dgcn evaluate` reads them, training never does
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from stages.core.datasets.demo import DEMO_CLASSES, DemoConfig, render_image
from stages.core.io.images import voc_palette

CLASSES = DEMO_CLASSES[1:]  # apple, bell, coin, drum, egg; "background" is implicit


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "labels"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write (created; existing files are replaced)")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-val", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    args = parser.parse_args()

    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")

    rng = np.random.default_rng(0)
    cfg = DemoConfig(size=args.size)
    palette = voc_palette().reshape(-1).tolist()
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    n = 0
    for split, count in (("train", args.n_train), ("val", args.n_val)):
        for _ in range(count):
            image, mask = render_image(rng, cfg)
            name = f"photo_{n:03d}.jpg"
            n += 1
            Image.fromarray(image).save(out / "images" / name, quality=92)
            # image-level labels: the names of the classes present in the picture
            present = [CLASSES[c - 1] for c in np.unique(mask) if 0 < c < 255]
            rows[split].append((name, " ".join(present)))
            if split == "val":
                m = Image.fromarray(mask, mode="P")
                m.putpalette(palette)
                m.save(out / "masks" / f"{Path(name).stem}.png")
    for split, split_rows in rows.items():
        write_csv(out / f"{split}.csv", split_rows)
    print(f"wrote {n} images to {out} ({len(rows['train'])} train, {len(rows['val'])} val with masks)")


if __name__ == "__main__":
    main()
