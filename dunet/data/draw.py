"""Landmarks drawn on images, for `dunet data show`, `dunet predict` and the demo report."""

from __future__ import annotations

import numpy as np

# After a flip the pairs are swapped back, so each colour must stay on the same body side.
SIDE_COLOURS = {1: (255, 60, 60), -1: (60, 140, 255), 0: (60, 230, 60)}


def draw_overlay(image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray, spec, scale: int = 1) -> np.ndarray:
    """Keypoints and skeleton on an (H, W, 3) uint8 RGB image, magnified `scale` times."""
    import cv2

    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale > 1 else image.copy()
    points = (keypoints + 0.5) * scale - 0.5
    side = spec.sided()
    for a, b in spec.skeleton:
        if visible[a] > 0 and visible[b] > 0:
            cv2.line(canvas, _px(points[a]), _px(points[b]), (230, 230, 230), 1, cv2.LINE_AA)
    radius = max(2, scale + 1)
    for k in range(len(points)):
        if visible[k] > 0:
            cv2.circle(canvas, _px(points[k]), radius, SIDE_COLOURS[int(side[k])], -1, cv2.LINE_AA)
            cv2.circle(canvas, _px(points[k]), radius, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _px(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))
