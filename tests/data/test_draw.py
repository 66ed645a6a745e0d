"""Overlays: limbs coloured by body side, dots and lines sized to the image, unsure points as rings."""

import numpy as np

from dunet.data.draw import CENTRE_LIMB, LOW_SCORE, SIDE_COLOURS, draw_overlay
from dunet.data.spec import SPECS

LSP = SPECS["lsp"]


def standing(side: int) -> np.ndarray:
    """A person facing the camera in a `side` x `side` picture: right limbs on the picture's left."""
    s = side / 100
    return np.array([[40, 95], [40, 75], [42, 55], [58, 55], [60, 75], [60, 95], [25, 55], [30, 42], [40, 30],
                     [60, 30], [70, 42], [75, 55], [50, 25], [50, 8]], np.float64) * s


def near(pixel, colour) -> bool:
    return int(np.abs(pixel.astype(int) - colour).max()) < 40  # lines are anti-aliased


def test_limbs_take_their_sides_colour_and_the_middle_stays_neutral():
    canvas = draw_overlay(np.zeros((800, 800, 3), np.uint8), standing(800), np.ones(14), LSP, palette="keypoint")
    right_shin, left_shin, neck = (320, 680), (480, 680), (400, 132)  # midpoints of lines, away from the dots
    assert near(canvas[right_shin[1], right_shin[0]], SIDE_COLOURS[1])  # right ankle - right knee
    assert near(canvas[left_shin[1], left_shin[0]], SIDE_COLOURS[-1])
    assert near(canvas[neck[1], neck[0]], CENTRE_LIMB)  # neck - head top


def test_dots_and_lines_grow_with_the_image_and_unsure_points_are_rings():
    def inked(side: int) -> int:
        canvas = draw_overlay(np.zeros((side, side, 3), np.uint8), standing(side), np.ones(14), LSP)
        return int((canvas.max(axis=2) > 0).sum())

    assert inked(1600) > 20 * inked(160)  # 10x the side: lines 10x longer and 5x wider; fixed sizes: 10x

    def head_top(score: float) -> tuple[bool, int]:  # the centre of its dot is its colour; pixels of it around
        scores = np.ones(14)
        scores[13] = score
        canvas = draw_overlay(np.zeros((800, 800, 3), np.uint8), standing(800), np.ones(14), LSP, scores=scores)
        x, y = standing(800)[13].astype(int)
        colour = (canvas[y - 8: y + 9, x - 8: x + 9] == SIDE_COLOURS[0]).all(axis=2)
        return bool(colour[8, 8]), int(colour.sum())

    sure, unsure = head_top(1.0), head_top(LOW_SCORE / 2)
    assert sure[0] and not unsure[0] and unsure[1] > 10  # unsure: a ring (hollow), sure: a filled dot
