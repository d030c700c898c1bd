"""Reading images and masks, and the VOC colour palette."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DatasetError
from .files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: Path, *, exif: bool = True) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any PIL-readable file; grey and RGBA are converted.

    With ``exif`` (the default) an EXIF Orientation tag is applied, so a phone photo stored
    sideways is read upright, as viewers and most labelling tools show it (and a mask drawn
    on it fits); VOC's JPEGs carry no such tag, so for them it changes nothing. A dataset
    whose annotations are on the stored pixel grid reads with ``exif=False`` (COCO: its
    masks are rasterised at the height and width its annotation file gives).

    The one image reader of every stage, with one policy: a missing, unreadable or
    oversized file (PIL's decompression-bomb limit, ``Image.MAX_IMAGE_PIXELS``) raises
    ``DatasetError`` naming the file; the stage decides whether to stop (training) or to
    record the image as unreadable and go on (``infer``).
    """
    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im) if exif else im
            return np.asarray(upright.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except Image.DecompressionBombError:
        raise DatasetError(_too_large("image", path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from None


def _too_large(what: str, path: Path) -> str:
    return (f"{what} {path} declares more than twice PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels; "
            "refusing it as a possible decompression bomb (shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS in your own code)")


# modes whose pixel values are class ids: palette and 8-bit grey, and the wider integer modes
# some tools write masks in (accepted only when every value fits a class id)
_MASK_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N")


def read_mask(path: Path) -> np.ndarray:
    """Class-index mask (H, W) uint8 from a palette or greyscale PNG (values are indices).

    A 16- or 32-bit mask is read only when all its values fit 8 bits (0-255): a value such
    as 258 would otherwise wrap to another class (2), silently.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in _MASK_MODES:
                raise DatasetError(
                    f"mask {path} has mode {im.mode}; expected a palette or greyscale PNG of class ids"
                )
            if im.mode in ("P", "L"):
                return np.asarray(im, dtype=np.uint8)
            values = np.asarray(im)
            if values.size and (values.min() < 0 or values.max() > 255):
                bad = values.max() if values.max() > 255 else values.min()
                raise DatasetError(
                    f"mask {path} is a {values.dtype.itemsize * 8}-bit image holding {int(bad)}, which does not fit "
                    "an 8-bit class id (0-255, 255 = ignore); save it as a palette or 8-bit greyscale PNG"
                )
            return values.astype(np.uint8)
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
    label = np.ascontiguousarray(label, dtype=np.uint8)
    im = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    im.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_path(Path(path)) as tmp:
        im.save(tmp, format="PNG")
