"""Landmarks drawn on images, for `dunet data show`, `dunet predict` (images and videos) and the demo report."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# After a flip the pairs are swapped back, so each colour must stay on the same body side.
SIDE_COLOURS = {1: (255, 60, 60), -1: (60, 140, 255), 0: (60, 230, 60)}
CENTRE_LIMB = (230, 230, 230)  # a line between the sides or along the middle (neck to head, a face's nose)
LEGEND_MAX = 24  # more names than this (68 face points) would cover the picture: no legend
LOW_SCORE = 0.3  # points scoring below this are drawn as rings: "not sure"


def keypoint_colours(count: int) -> list[tuple[int, int, int]]:
    """One distinct, saturated RGB colour per keypoint (hues spread around the wheel)."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(k / max(count, 1), 0.85, 1.0)) for k in range(count)]


def draw_overlay(image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray, spec, scale: int = 1, *,
                 scores: np.ndarray | None = None, palette: str = "side", legend: bool = False) -> np.ndarray:
    """Keypoints and skeleton on an (H, W, 3) uint8 RGB image, magnified `scale` times; a new image.

    Dots and lines are sized to the image (a 1280 px picture: 8 px dots, 4 px lines), so they stay readable
    on a phone photo as on a thumbnail. Lines are coloured by body side (the spec's flip pairs: a left arm
    and a right arm differ at a glance, and a swapped prediction shows). palette "side": dots too, one colour
    per body side (checks flips); "keypoint": one colour per keypoint. `scores`: points below LOW_SCORE are
    drawn as rings. `legend`: the keypoint names in their colours, in a panel right of the image (up to
    LEGEND_MAX of them). Drawn with Pillow, so that inference needs no OpenCV."""
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.BILINEAR)
    points = (np.asarray(keypoints, np.float64) + 0.5) * scale - 0.5
    extent = max(canvas.size)
    radius = max(2, int(round(extent / 160)))
    thickness = max(1, radius // 2)
    side = spec.sided()
    if palette == "keypoint":
        colours = keypoint_colours(len(points))
    else:
        colours = [SIDE_COLOURS[int(side[k])] for k in range(len(points))]
    shown = [visible[k] > 0 and np.isfinite(points[k]).all() for k in range(len(points))]
    pen = ImageDraw.Draw(canvas)
    for a, b in spec.skeleton:
        if shown[a] and shown[b]:
            limb = SIDE_COLOURS[int(side[a])] if side[a] == side[b] != 0 else CENTRE_LIMB
            pen.line([tuple(points[a]), tuple(points[b])], fill=limb, width=thickness)
    for k in range(len(points)):
        if not shown[k]:
            continue
        x, y = points[k]
        disc = [x - radius, y - radius, x + radius, y + radius]
        if scores is None or scores[k] >= LOW_SCORE:
            pen.ellipse(disc, fill=colours[k], outline=(0, 0, 0), width=1)
        else:
            pen.ellipse(disc, outline=colours[k], width=thickness)
    canvas = np.asarray(canvas).copy()
    if legend and len(points) <= LEGEND_MAX:
        canvas = _legend(canvas, list(spec.keypoints), colours)
    return canvas


def _legend(canvas: np.ndarray, names: list[str], colours) -> np.ndarray:
    """The picture with a panel on its right listing the names in their colours (the picture itself is not
    covered, so small images stay readable; the panel makes the canvas taller if it needs to)."""
    font = ImageFont.load_default(size=max(11, round(max(canvas.shape[:2]) / 90)))
    line = round(font.size * 1.6)
    text_width = max(font.getbbox(n)[2] for n in names)
    height = max(canvas.shape[0], line * len(names) + line // 2)
    panel = Image.new("RGB", (canvas.shape[1] + text_width + 2 * line, height), (24, 24, 24))
    panel.paste(Image.fromarray(canvas), (0, 0))
    pen = ImageDraw.Draw(panel)
    left, dot = canvas.shape[1], max(2, line // 4)
    for i, (name, colour) in enumerate(zip(names, colours)):
        middle = line * i + line // 2 + line // 4  # of the text line
        pen.ellipse([left + line // 2 + 2 - dot, middle - dot, left + line // 2 + 2 + dot, middle + dot], fill=colour)
        pen.text((left + line + 2, middle), name, fill=colour, font=font, anchor="lm")
    return np.asarray(panel).copy()
