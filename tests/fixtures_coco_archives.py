"""Small stand-ins for COCO's ``train2014.zip``, ``val2014.zip`` and
``annotations_trainval2014.zip``, in their real layout, made from the coco128 photos and their
COCO-format annotations (``../shared/data/coco128-coco``).

``build_coco_archives(dest, n_train, n_val)`` takes the first ``n_train`` images (by COCO id) as
train2014 and the next ``n_val`` as val2014, each with its own annotations; the annotations zip
also holds a captions file, which ``prepare`` must not unpack. ``drop_from_val`` leaves that many
listed images out of val2014.zip (a broken download).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128-coco"
SPLITS = ("train2014", "val2014")


def build_coco_archives(dest: Path, n_train: int = 12, n_val: int = 6, *, drop_from_val: int = 0,
                        source: Path = COCO128) -> dict:
    """Write the three zips into ``dest``; returns their paths (``zips``), ``counts`` (images listed
    per split), ``labelled`` (images with a non-crowd annotation per split) and ``file_names``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    data = json.loads((source / "annotations" / "instances_train2017.json").read_text())
    images = sorted(data["images"], key=lambda im: im["id"])
    chosen = {"train2014": images[:n_train], "val2014": images[n_train:n_train + n_val]}
    zips, counts, labelled, file_names = {}, {}, {}, {}
    for split, imgs in chosen.items():
        ids = {im["id"] for im in imgs}
        anns = [a for a in data["annotations"] if a["image_id"] in ids]
        subset = {**data, "info": {"description": f"dgcn test subset {split}"}, "images": imgs, "annotations": anns}
        chosen[split] = subset
        counts[split] = len(imgs)
        labelled[split] = len({a["image_id"] for a in anns if not a.get("iscrowd", 0)})
        file_names[split] = [im["file_name"] for im in imgs]
        zips[split] = dest / f"{split}.zip"
        kept = imgs[: len(imgs) - drop_from_val] if split == "val2014" else imgs
        with zipfile.ZipFile(zips[split], "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{split}/", b"")
            for im in kept:
                zf.write(source / "train2017" / im["file_name"], f"{split}/{im['file_name']}")
    zips["annotations"] = dest / "annotations_trainval2014.zip"
    with zipfile.ZipFile(zips["annotations"], "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for split in SPLITS:
            zf.writestr(f"annotations/instances_{split}.json", json.dumps(chosen[split]))
            zf.writestr(f"annotations/captions_{split}.json", json.dumps({"annotations": []}))
    return {"archives": dest, "zips": zips, "counts": counts, "labelled": labelled, "file_names": file_names}
