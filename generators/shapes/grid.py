"""A labelled PNG grid of images: one row per caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 260


def save_grid(images_RSHW3: np.ndarray, labels: list[str], path: Path, scale: int = 2, pad: int = 4) -> None:
    """images (rows, samples, H, W, 3) uint8 -> a PNG with each row's label on its left."""
    rows, samples, h, w, _ = images_RSHW3.shape
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = Image.new("RGB", (LABEL_WIDTH + samples * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for r in range(rows):
        draw.text((4, r * cell_h + cell_h // 2 - 6), labels[r], fill="black")
        for s in range(samples):
            tile = Image.fromarray(images_RSHW3[r, s]).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + s * cell_w, r * cell_h))
    canvas.save(path)
