"""Sample grids one can read: the reverse process of a few samples, a row per sampling step.

:func:`sampling_grid` turns the snapshots of :func:`~rdbench.systems.ddpm.sample.sample`
(reverse step -> images) into one RGB image: row ``k`` holds the first images at one
reverse step (``x_T`` at the top, the samples at the bottom), upscaled with nearest
neighbours so that a row is at least ``min_row_px`` pixels tall, and a label strip on
the left names the step (``step 250/1000  t=750``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

GAP = 2  # pixels between images, before upscaling
LABEL_WIDTH_PX = 300
FONT_FRACTION = 0.12  # label font size as a fraction of the row height


def image_grid(images: torch.Tensor, pixel_range: tuple[float, float], columns: int = 8) -> np.ndarray:
    """Samples ``(N, C, H, W)`` -> one ``HxW`` (grey) or ``HxWx3`` array in [0, 1], 2-pixel gaps."""
    lo, hi = pixel_range
    x = ((images.float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    n, c, h, w = x.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = torch.ones(c, rows * (h + GAP) - GAP, columns * (w + GAP) - GAP)
    for i in range(n):
        r, k = divmod(i, columns)
        grid[:, r * (h + GAP) : r * (h + GAP) + h, k * (w + GAP) : k * (w + GAP) + w] = x[i]
    out = grid.permute(1, 2, 0).numpy().astype(np.float64)
    return out[:, :, 0] if c == 1 else out


def step_label(step: int, timesteps: int) -> str:
    if step == 0:
        return f"step 0/{timesteps}\nx_T (noise)"
    if step == timesteps:
        return f"step {step}/{timesteps}\nx_0 (sample)"
    return f"step {step}/{timesteps}\nt={timesteps - step}"


def sampling_grid(snapshots: dict[int, torch.Tensor], timesteps: int, pixel_range: tuple[float, float],
                  min_row_px: int = 256) -> np.ndarray:
    """One ``uint8`` RGB image: a labelled, upscaled row of images per reverse step in ``snapshots``."""
    from PIL import Image, ImageDraw

    steps = sorted(snapshots)
    h = next(iter(snapshots.values())).shape[-2]
    scale = max(1, math.ceil(min_row_px / h))
    rows = []
    for step in steps:
        row = image_grid(snapshots[step], pixel_range, columns=snapshots[step].shape[0])
        row = np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)  # nearest neighbour
        rgb = np.stack([row] * 3, axis=-1) if row.ndim == 2 else row
        rows.append((rgb * 255).round().astype(np.uint8))
    gap = GAP * scale
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    canvas = np.full((height, LABEL_WIDTH_PX + width, 3), 255, dtype=np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font(max(12, int(FONT_FRACTION * rows[0].shape[0])))
    y = 0
    for step, row in zip(steps, rows, strict=True):
        image.paste(Image.fromarray(row), (LABEL_WIDTH_PX, y))
        draw.multiline_text((8, y + row.shape[0] // 3), step_label(step, timesteps), fill=(0, 0, 0), font=font)
        y += row.shape[0] + gap
    return np.asarray(image)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed size
        return ImageFont.load_default()
