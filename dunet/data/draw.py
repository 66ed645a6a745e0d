"""Landmarks drawn on images, for `dunet data show`, `dunet predict` (images and videos) and the demo report."""

from __future__ import annotations

import colorsys

import numpy as np

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
    """Keypoints and skeleton on an (H, W, 3) uint8 RGB image, magnified `scale` times.

    Dots and lines are sized to the image (a 1280 px picture: 8 px dots, 4 px lines), so they stay readable
    on a phone photo as on a thumbnail. Lines are coloured by body side (the spec's flip pairs: a left arm
    and a right arm differ at a glance, and a swapped prediction shows). palette "side": dots too, one colour
    per body side (checks flips); "keypoint": one colour per keypoint. `scores`: points below LOW_SCORE are
    drawn as rings. `legend`: the keypoint names in their colours, in a panel right of the image (up to
    LEGEND_MAX of them)."""
    import cv2

    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else image.copy()
    points = (np.asarray(keypoints, np.float64) + 0.5) * scale - 0.5
    extent = max(canvas.shape[:2])
    radius = max(2, int(round(extent / 160)))
    thickness = max(1, radius // 2)
    side = spec.sided()
    if palette == "keypoint":
        colours = keypoint_colours(len(points))
    else:
        colours = [SIDE_COLOURS[int(side[k])] for k in range(len(points))]
    shown = [visible[k] > 0 and np.isfinite(points[k]).all() for k in range(len(points))]
    for a, b in spec.skeleton:
        if shown[a] and shown[b]:
            limb = SIDE_COLOURS[int(side[a])] if side[a] == side[b] != 0 else CENTRE_LIMB
            cv2.line(canvas, _px(points[a]), _px(points[b]), limb, thickness, cv2.LINE_AA)
    for k in range(len(points)):
        if not shown[k]:
            continue
        sure = scores is None or scores[k] >= LOW_SCORE
        cv2.circle(canvas, _px(points[k]), radius, colours[k], -1 if sure else thickness, cv2.LINE_AA)
        if sure:
            cv2.circle(canvas, _px(points[k]), radius, (0, 0, 0), 1, cv2.LINE_AA)
    if legend and len(points) <= LEGEND_MAX:
        canvas = _legend(canvas, list(spec.keypoints), colours)
    return canvas


def _legend(canvas: np.ndarray, names: list[str], colours) -> np.ndarray:
    """The picture with a panel on its right listing the names in their colours (the picture itself is not
    covered, so small images stay readable; the panel makes the canvas taller if it needs to)."""
    import cv2

    font_scale = max(0.4, max(canvas.shape[:2]) / 1400)
    line = int(round(22 * font_scale / 0.5))
    text_width = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for n in names)
    height = max(canvas.shape[0], line * len(names) + line // 2)
    out = np.full((height, canvas.shape[1] + text_width + 2 * line, 3), 24, np.uint8)
    out[:canvas.shape[0], :canvas.shape[1]] = canvas
    left = canvas.shape[1]
    for i, (name, colour) in enumerate(zip(names, colours)):
        y = line * (i + 1)
        cv2.circle(out, (left + line // 2 + 2, y - line // 3), max(2, line // 4), colour, -1, cv2.LINE_AA)
        cv2.putText(out, name, (left + line + 2, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, 1, cv2.LINE_AA)
    return out


def _px(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))
