"""Unsupervised saliency maps, the source of DGCN's background seeds.

The paper took its background cue from DRFI saliency. DRFI needs a trained
regressor, so this module ships training-free methods instead, registered in
:data:`SALIENCY`, and :func:`load_saliency_png` to import maps that any other
tool (DRFI included) has written as PNGs.

Every method has the signature ``fn(image) -> saliency`` with ``image`` an
(H, W, 3) uint8 RGB array and ``saliency`` an (H, W) float32 array in [0, 1],
1 meaning salient (likely foreground).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from ..errors import DgcnError
from ..io.images import resize_image, resize_map
from ..registry import Registry

SaliencyFn = Callable[[np.ndarray], np.ndarray]

SALIENCY: Registry[SaliencyFn] = Registry("saliency method")

# Methods run at this size (longest side) and the map is resized back: the
# cues are smooth at object scale, and it bounds the cost on large photos.
WORK_MAX_SIDE = 300


# ---------------------------------------------------------------- helpers


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"saliency expects an (H, W, 3) uint8 RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"saliency expects a uint8 image, got dtype {image.dtype}")


def _to_work_size(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    return resize_image(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-12:
        # A map with no contrast says nothing is salient; 0 keeps such images
        # from producing foreground everywhere downstream.
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB uint8 image, float32 (H, W, 3); L in [0, 100]."""
    rgb = image.astype(np.float32) / 255.0
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375],
         [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]],
        dtype=np.float32,
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def _border_width(h: int, w: int) -> int:
    # 5% of the longest side (15 px at the 300-px working size), at least one
    # pixel and never more than half the shorter side.
    return int(min(max(1, round(0.05 * max(h, w))), max(1, min(h, w) // 2)))


def _directional_views(*arrays: np.ndarray):
    """The four scan orders (down, up, right, left) as views along axis 0.

    Writing through a view writes the original array, so one scan routine
    over axis 0 serves all four directions.
    """
    yield tuple(arrays)
    yield tuple(a[::-1] for a in arrays)
    yield tuple(np.swapaxes(a, 0, 1) for a in arrays)
    yield tuple(np.swapaxes(a, 0, 1)[::-1] for a in arrays)


# ------------------------------------------------- minimum barrier distance


def _mbd_scan(dist: np.ndarray, hi: np.ndarray, lo: np.ndarray, img: np.ndarray) -> None:
    # The path to row r extends the best path to row r-1 by one step; the
    # barrier of the extended path is max - min of the values along it.
    for r in range(1, dist.shape[0]):
        h = np.maximum(hi[r - 1], img[r])
        l = np.minimum(lo[r - 1], img[r])
        cost = h - l
        better = cost < dist[r]
        np.copyto(dist[r], cost, where=better)
        np.copyto(hi[r], h, where=better)
        np.copyto(lo[r], l, where=better)


def mbd_transform(channels: np.ndarray, rounds: int = 3) -> np.ndarray:
    """FastMBD: the minimum barrier distance of every pixel to the image border.

    ``channels``: (H, W, K) float; each channel gets its own distance map and
    the K maps are summed, as MB+ does over the Lab channels. The barrier of a
    path is (max - min) of the values on it; FastMBD approximates the minimum
    over paths by raster scans that extend the best path of a neighbour.

    Zhang et al. alternate forward and backward raster scans, whose inner
    loop runs pixel by pixel. Here each scan moves a whole row (or column)
    at once in one of four directions, so the per-step work is vectorised;
    a path may turn only between scans, so a round is four scans (down, up,
    right, left) and up to ``rounds`` rounds are run, stopping early when a
    round changes nothing. Like FastMBD's, the result is an upper bound on
    the exact distance (the barrier has no optimal substructure, so extending
    a neighbour's best path is a heuristic).
    """
    img = np.ascontiguousarray(channels, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    dist = np.full(img.shape, np.inf, dtype=np.float32)
    border = np.zeros((h, w), dtype=bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    dist[border] = 0.0
    hi = img.copy()
    lo = img.copy()
    for _ in range(max(1, rounds)):
        before = dist.copy()
        for views in _directional_views(dist, hi, lo, img):
            _mbd_scan(*views)
        if np.array_equal(before, dist):
            break
    dist[~np.isfinite(dist)] = 0.0  # only possible for degenerate 1-pixel-wide images
    return dist.sum(axis=2)


def backgroundness(lab: np.ndarray) -> np.ndarray:
    """MB+'s image-boundary contrast cue (unnormalised).

    For each of the four border strips, the Mahalanobis distance of every
    pixel's colour to the strip's colour distribution, scaled to a maximum of
    1. The four maps are summed minus the largest one, so one border that the
    object touches (and whose colours therefore match the object) cannot
    cancel the other three.
    """
    h, w = lab.shape[:2]
    r = _border_width(h, w)
    strips = [lab[:r], lab[-r:], lab[:, :r], lab[:, -r:]]
    flat = lab.reshape(-1, 3).astype(np.float64)
    maps = []
    for strip in strips:
        s = strip.reshape(-1, 3).astype(np.float64)
        mu = s.mean(axis=0)
        # A flat strip has a singular covariance; a floor of 1 (Lab units^2,
        # about one just-noticeable difference) keeps the inverse finite.
        cov = np.cov(s, rowvar=False) if len(s) > 1 else np.zeros((3, 3))
        cov = cov + np.eye(3)
        inv = np.linalg.inv(cov)
        d = flat - mu
        m = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, inv, d), 0.0))
        maps.append(m / m.max() if m.max() > 0 else m)
    stack = np.stack(maps)
    return (stack.sum(axis=0) - stack.max(axis=0)).reshape(h, w).astype(np.float32)


def _reconstruct_by_dilation(marker: np.ndarray, mask: np.ndarray, max_rounds: int = 20) -> np.ndarray:
    """Greyscale morphological reconstruction of ``marker`` under ``mask`` (4-connected).

    Done as repeated directional scans (each row takes the max of itself and
    its predecessor, capped by the mask) rather than by repeated 3x3
    dilations, which would need as many passes as the longest geodesic path.
    """
    out = np.minimum(marker, mask).astype(np.float32)
    mask = mask.astype(np.float32)
    for _ in range(max_rounds):
        before = out.copy()
        for o, m in _directional_views(out, mask):
            for r in range(1, o.shape[0]):
                np.minimum(np.maximum(o[r], o[r - 1]), m[r], out=o[r])
        if np.array_equal(before, out):
            break
    return out


def _reconstruct_by_erosion(marker: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return 1.0 - _reconstruct_by_dilation(1.0 - marker, 1.0 - mask)


def morphological_smoothing(sal: np.ndarray, alpha: float = 50.0) -> np.ndarray:
    """MB+'s opening- then closing-by-reconstruction of a [0, 1] map.

    The structuring element grows with the map's mean (radius
    alpha * sqrt(mean)), so maps with large salient regions are smoothed
    more. alpha is in pixels of the paper's 300-px working size and is scaled
    to the map's own size: unscaled, a 64-px map was opened by an element as
    large as itself and came out all zero. A square element stands in for the
    paper's disk: scipy's min/max filters are separable for squares, which
    keeps this cheap.
    """
    alpha = alpha * max(sal.shape) / WORK_MAX_SIDE
    radius = int(round(alpha * np.sqrt(max(float(sal.mean()), 0.0))))
    if radius < 1:
        return sal
    size = 2 * radius + 1
    opened = _reconstruct_by_dilation(ndimage.minimum_filter(sal, size=size), sal)
    return _reconstruct_by_erosion(ndimage.maximum_filter(opened, size=size), opened)


def centre_bias(h: int, w: int) -> np.ndarray:
    """1 at the image centre, falling linearly to 0 at the corners."""
    yy = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    xx = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    corner = np.sqrt(((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
    if corner == 0:
        return np.ones((h, w), dtype=np.float32)
    return (1.0 - np.sqrt(yy**2 + xx**2) / corner).astype(np.float32)


def otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the split maximising between-class variance."""
    hist, edges = np.histogram(x, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def contrast_enhance(sal: np.ndarray, b: float = 10.0) -> np.ndarray:
    """A sigmoid centred on the Otsu threshold pushes the map towards 0 / 1."""
    t = otsu_threshold(sal)
    return (1.0 / (1.0 + np.exp(-b * (sal - t)))).astype(np.float32)


@SALIENCY.register("mbd")
def mbd_saliency(image: np.ndarray) -> np.ndarray:
    """MB+ saliency: Zhang, Sclaroff, Lin, Shen, Price, Mech, "Minimum Barrier
    Salient Object Detection at 80 FPS", ICCV 2015.

    The minimum barrier distance to the image border, per Lab channel and
    summed, plus the image-boundary contrast (backgroundness) cue, then the
    paper's post-processing: morphological smoothing, centre bias and
    Otsu-centred sigmoid contrast enhancement. Runs at a longest side of
    :data:`WORK_MAX_SIDE` and is resized back to the input size.
    """
    _check_image(image)
    height, width = image.shape[:2]
    small = _to_work_size(image, WORK_MAX_SIDE)
    lab = rgb_to_lab(small)
    sal = _normalise(_normalise(mbd_transform(lab)) + _normalise(backgroundness(lab)))
    sal = _normalise(morphological_smoothing(sal))
    sal = _normalise(sal * centre_bias(*sal.shape))
    if sal.max() > 0:
        sal = _normalise(contrast_enhance(sal))
    return np.clip(resize_map(sal, (height, width)), 0.0, 1.0).astype(np.float32)


@SALIENCY.register("border_contrast")
def border_contrast_saliency(image: np.ndarray) -> np.ndarray:
    """Baseline: Lab distance of each pixel to the mean colour of the image border.

    The boundary prior (background tends to touch the image border) at its
    simplest: no paths, no per-side statistics, no post-processing. It
    serves as a reference that any real method should beat.
    """
    _check_image(image)
    height, width = image.shape[:2]
    lab = rgb_to_lab(_to_work_size(image, WORK_MAX_SIDE))
    h, w = lab.shape[:2]
    r = _border_width(h, w)
    ring = np.ones((h, w), dtype=bool)
    ring[r : h - r, r : w - r] = False
    mean = lab[ring].mean(axis=0)
    sal = _normalise(np.linalg.norm(lab - mean, axis=2))
    return np.clip(resize_map(sal, (height, width)), 0.0, 1.0).astype(np.float32)


def compute_saliency(image: np.ndarray, method: str = "mbd") -> np.ndarray:
    """Look the method up in :data:`SALIENCY` and apply it."""
    return SALIENCY.get(method)(image)


# ------------------------------------------------------------- importing


def load_saliency_png(path: str | Path) -> np.ndarray:
    """Read a saliency map written by another tool (DRFI, MB+, ...) as float32 in [0, 1].

    Accepts 8-bit greyscale PNGs (0-255, 255 = salient), 16-bit greyscale
    (0-65535), and RGB / palette PNGs, which are converted to grey. Any
    unreadable file raises :class:`DgcnError` naming the file.
    """
    path = Path(path)
    hint = "saliency imports expect a greyscale PNG with 0 = background and 255 = salient"
    try:
        with Image.open(path) as im:
            im.load()
            # Pillow before 10 opened 16-bit greyscale PNGs as mode "I".
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
            elif im.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA"):
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            else:
                raise DgcnError(f"saliency map {path} has unsupported image mode {im.mode}; {hint}")
    except FileNotFoundError:
        raise DgcnError(f"saliency map not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DgcnError(f"cannot read saliency map {path} ({err}); {hint}") from None
    if arr.ndim != 2 or arr.size == 0:
        raise DgcnError(f"saliency map {path} has shape {arr.shape}; {hint}")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)
