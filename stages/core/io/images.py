"""Reading images and masks, and the VOC colour palette."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any PIL-readable file; grey and RGBA are converted.

    The one image reader of every stage, with one policy: a missing, unreadable or
    oversized file (PIL's decompression-bomb limit, ``Image.MAX_IMAGE_PIXELS``) raises
    ``DatasetError`` naming the file; the stage decides whether to stop (training) or to
    record the image as unreadable and go on (``infer``).
    """
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except Image.DecompressionBombError:
        raise DatasetError(_too_large("image", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from None


def _too_large(what: str, path: Path) -> str:
    return (f"{what} {path} declares more than twice PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels; "
            "refusing it as a possible decompression bomb (shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS in your own code)")


def read_mask(path: Path) -> np.ndarray:
    """Class-index mask (H, W) uint8 from a palette or greyscale PNG (values are indices)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DatasetError(
                    f"mask {path} has mode {im.mode}; expected a palette or greyscale PNG of class ids"
                )
            return np.asarray(im, dtype=np.uint8) if im.mode in ("P", "L") else np.asarray(im).astype(np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"mask not found: {path}") from None
    except Image.DecompressionBombError:
        raise DatasetError(_too_large("mask", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"cannot read mask {path}: {err}") from None


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to ``size`` = (H, W); the input itself
    (made contiguous) when it already has that size."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W) float map (saliency, a CAM, a probability) to ``size`` = (H, W), as float32."""
    values = np.asarray(values, dtype=np.float32)
    if values.shape == tuple(size):
        return values
    return np.asarray(Image.fromarray(values, mode="F").resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 label map to (H, W): class ids are never interpolated.
    Returns the input itself when it already has that size."""
    label = np.asarray(label, dtype=np.uint8)
    if label.shape == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, (n, 3) uint8 (bit-interleaved as in the devkit)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[255] = (224, 224, 192)
    return pal


def write_palette_png(path: Path, label: np.ndarray) -> None:
    """Write a uint8 label map as a VOC-coloured palette PNG, atomically."""
    im = Image.fromarray(label.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    tmp = path.with_name(path.name + ".partial")
    im.save(tmp, format="PNG")
    tmp.replace(path)
