"""The synthetic shop's item pictures: a patterned shape on a light background, drawn from a look that the
item's class decides (see synthetic.py)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# Shape outlines on the unit circle; circle and ring are drawn as ellipses.
_ARM = 0.3
_OUTLINES = {
    "square": [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)],
    "triangle": [(math.cos(a), math.sin(a)) for a in np.radians([-90, 30, 150])],
    "hexagon": [(math.cos(a), math.sin(a)) for a in np.radians(np.arange(6) * 60)],
    "star": [
        (r * math.cos(a), r * math.sin(a))
        for r, a in zip([1.0, 0.45] * 5, np.radians(np.arange(10) * 36 - 90))
    ],
    "diamond": [(0, -1), (0.6, 0), (0, 1), (-0.6, 0)],
    "cross": [
        (-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM),
        (_ARM, 1), (-_ARM, 1), (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM),
    ],
}


def draw_picture(look: dict, size: int) -> Image.Image:
    """One item picture: a patterned shape on a light background."""
    picture = Image.new("RGB", (size, size), look["background"])
    fill = Image.new("RGB", (size, size), look["fill"])
    _draw_pattern(ImageDraw.Draw(fill), look["pattern"], look["ink"], look["spacing"], size)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    (cx, cy), r = look["centre"], look["radius"]
    if look["shape"] in ("circle", "ring"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if look["shape"] == "ring":
            inner = 0.55 * r
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        angle = math.radians(look["rotation"])
        cos, sin = math.cos(angle), math.sin(angle)
        corners = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in _OUTLINES[look["shape"]]]
        draw.polygon(corners, fill=255)
    picture.paste(fill, (0, 0), mask)
    return picture


def _draw_pattern(
    draw: ImageDraw.ImageDraw, pattern: str, ink: tuple[int, int, int], step: int, size: int
) -> None:
    if pattern == "striped":
        for k in range(-size, size, step):
            draw.line([(k, 0), (k + size, size)], fill=ink, width=max(1, step // 3))
    elif pattern == "dotted":
        dot = step / 4
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=ink)
    elif pattern == "checked":
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=ink)
