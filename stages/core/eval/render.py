"""Drawing helpers for pictures of images, CAMs, saliency and label maps.

Label maps use the VOC palette except for 255 (unlabelled / ignore), which is
drawn in ``UNLABELLED_RGB``: the devkit's cream colour is too close to some
class colours to read "no label here" at a glance. Continuous maps in [0, 1]
(CAMs, saliency) use a jet-like ramp, dark blue (0) to dark red (1).

Layout of a grid (``compose_grid``): a header strip ``HEADER_H`` px high
naming the columns, then one row of ``tile`` x ``tile`` cells per image with
no gaps, then a legend strip whose height ``legend_height`` gives. Every size
is a function of these constants, so tests and callers can predict them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io.images import voc_palette
from ..maps import IGNORE

UNLABELLED_RGB = (224, 224, 224)
CANVAS_RGB = (255, 255, 255)
TEXT_RGB = (0, 0, 0)
CAPTION_BOX_RGBA = (0, 0, 0, 150)
CAPTION_TEXT_RGB = (255, 255, 255)

HEADER_H = 18
LEGEND_PAD = 6
LEGEND_ROW_H = 16
SWATCH = 12
SWATCH_GAP = 4
ENTRY_GAP = 12
HEATBAR_W = 48

MIN_TILE = 32


def palette() -> np.ndarray:
    """(256, 3) uint8: VOC colours, 255 replaced by ``UNLABELLED_RGB``."""
    pal = voc_palette(256).copy()
    pal[IGNORE] = UNLABELLED_RGB
    return pal


_PALETTE = palette()


def colorize(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 RGB."""
    return _PALETTE[np.asarray(label, dtype=np.uint8)]


def _jet_lut(n: int = 256) -> np.ndarray:
    # Piecewise-linear jet: each channel is a tent around its peak (b at 1/4,
    # g at 1/2, r at 3/4), clipped, so 0 is dark blue and 1 is dark red.
    v = np.linspace(0.0, 1.0, n)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.round(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


_JET = _jet_lut()


def heatmap(values: np.ndarray) -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8 jet colours. NaN counts as 0."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    idx = np.round(np.clip(v, 0.0, 1.0) * (len(_JET) - 1)).astype(np.intp)
    return _JET[idx]


def blend(image: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha`` of ``colours`` over ``image`` (both (H, W, 3) uint8)."""
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Label colours blended over the image (same size).

    Unlabelled pixels are blended too (with ``UNLABELLED_RGB``), so the overlay
    reads the same as the legend: washed-out grey means "no label".
    """
    return blend(image, colorize(label), alpha)


def fit_size(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is ``tile``, aspect ratio kept."""
    h, w = int(shape[0]), int(shape[1])
    scale = tile / max(h, w, 1)
    return max(1, round(h * scale)), max(1, round(w * scale))


@lru_cache(maxsize=1)
def font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def text_width(text: str) -> int:
    left, _, right, _ = font().getbbox(text)
    return int(right - left)


def fit_text(text: str, width: int) -> str:
    """``text`` cut short with '..' so it fits ``width`` px."""
    if text_width(text) <= width:
        return text
    while text and text_width(text + "..") > width:
        text = text[:-1]
    return text + ".." if text else ""


def caption(panel: np.ndarray, text: str, where: str = "top") -> np.ndarray:
    """Text on a translucent dark box at the panel's top- or bottom-left corner."""
    im = Image.fromarray(panel).convert("RGBA")
    layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    text = fit_text(text, im.width - 4)
    if text:
        _, _, right, bottom = font().getbbox(text)
        box_h = bottom + 3
        y = 0 if where == "top" else im.height - box_h
        draw.rectangle((0, y, right + 4, y + box_h), fill=CAPTION_BOX_RGBA)
        draw.text((2, y + 1), text, font=font(), fill=CAPTION_TEXT_RGB)
    return np.asarray(Image.alpha_composite(im, layer).convert("RGB"))


@dataclass(frozen=True)
class LegendEntry:
    """A class swatch (``class_id`` set) or the heat colour bar (``class_id`` None)."""

    name: str
    class_id: Optional[int] = None

    @property
    def width(self) -> int:
        mark = SWATCH if self.class_id is not None else HEATBAR_W
        return mark + SWATCH_GAP + text_width(self.name)


def _legend_rows(entries: Sequence[LegendEntry], width: int) -> list[list[LegendEntry]]:
    rows: list[list[LegendEntry]] = []
    x = width  # forces a new row for the first entry
    for e in entries:
        if rows and x + ENTRY_GAP + e.width <= width - LEGEND_PAD:
            rows[-1].append(e)
            x += ENTRY_GAP + e.width
        else:
            rows.append([e])
            x = LEGEND_PAD + e.width
    return rows


def legend_height(entries: Sequence[LegendEntry], width: int) -> int:
    """Height of the legend strip for ``entries`` wrapped to ``width`` px; 0 when empty."""
    if not entries:
        return 0
    return 2 * LEGEND_PAD + LEGEND_ROW_H * len(_legend_rows(entries, width))


def draw_legend(entries: Sequence[LegendEntry], width: int) -> Image.Image:
    im = Image.new("RGB", (width, legend_height(entries, width)), CANVAS_RGB)
    draw = ImageDraw.Draw(im)
    for r, row in enumerate(_legend_rows(entries, width)):
        y = LEGEND_PAD + r * LEGEND_ROW_H
        sy = y + (LEGEND_ROW_H - SWATCH) // 2
        x = LEGEND_PAD
        for e in row:
            if e.class_id is not None:
                draw.rectangle((x, sy, x + SWATCH - 1, sy + SWATCH - 1), fill=tuple(int(c) for c in _PALETTE[e.class_id]), outline=(96, 96, 96))
                x += SWATCH
            else:
                ramp = heatmap(np.tile(np.linspace(0, 1, HEATBAR_W, dtype=np.float32), (SWATCH, 1)))
                im.paste(Image.fromarray(ramp), (x, sy))
                x += HEATBAR_W
            x += SWATCH_GAP
            draw.text((x, sy), e.name, font=font(), fill=TEXT_RGB)
            x += text_width(e.name) + ENTRY_GAP
    return im


def grid_size(n_rows: int, n_cols: int, tile: int, entries: Sequence[LegendEntry]) -> tuple[int, int]:
    """(width, height) of the image ``compose_grid`` makes."""
    width = n_cols * tile
    return width, HEADER_H + n_rows * tile + legend_height(entries, width)


def compose_grid(
    headers: Sequence[str],
    rows: Sequence[Sequence[Optional[np.ndarray]]],
    tile: int,
    entries: Sequence[LegendEntry] = (),
) -> Image.Image:
    """Header strip, then ``rows`` of panels (None = empty cell), then the legend.

    Each panel (at most ``tile`` on either side) is centred in its cell.
    """
    width, height = grid_size(len(rows), len(headers), tile, entries)
    canvas = Image.new("RGB", (width, height), CANVAS_RGB)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(headers):
        text = fit_text(name, tile - 4)
        _, top, right, bottom = font().getbbox(text) if text else (0, 0, 0, 0)
        draw.text((c * tile + (tile - right) // 2, (HEADER_H - bottom - top) // 2), text, font=font(), fill=TEXT_RGB)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            if panel is None:
                continue
            ph, pw = panel.shape[:2]
            x = c * tile + (tile - pw) // 2
            y = HEADER_H + r * tile + (tile - ph) // 2
            canvas.paste(Image.fromarray(panel), (x, y))
    if entries:
        canvas.paste(draw_legend(entries, width), (0, HEADER_H + len(rows) * tile))
    return canvas
