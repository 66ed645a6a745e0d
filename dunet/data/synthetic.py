"""The built-in data set: procedurally drawn faces with the 68 iBUG landmarks, no files needed.

Each face is a pure function of (seed, index): a 3-D landmark template is varied in identity
(face shape, eye spacing, nose, mouth) and expression (open mouth, smile, raised brows, blinks), turned
in yaw, pitch and roll, projected, and drawn over a cluttered background with random skin, hair,
lighting, occluders, blur and noise. Occluded landmarks stay labelled (visible = 1), as in 300-W.

The point is a data set that is learnable but not trivial and costs about a millisecond per 128 px
image, so demos and fast tests train without downloads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from dunet.data.sample import Sample, Source, box_from_keypoints
from dunet.data.spec import SPECS

DEFAULT_COUNT = 2000
DEFAULT_SIZE = 128
SUBPIXEL_BITS = 4  # cv2 drawing with 1/16 px precision, so drawn features sit where the labels are
_ONE = 1 << SUBPIXEL_BITS


def _template() -> np.ndarray:
    """Mean 3-D face, (68 + extras, 3): x right on screen, y down, z towards the camera; face width ~2."""
    points = np.zeros((68, 3))
    # Jaw 0-16: a U from the right ear (screen left) over the chin to the left ear; sides further back.
    theta = np.linspace(0.0, math.pi, 17)
    points[0:17, 0] = -np.cos(theta) * (1.0 - 0.12 * np.sin(theta) ** 4)
    points[0:17, 1] = -0.15 + np.sin(theta) * 1.3
    points[0:17, 2] = -0.7 * (1.0 - np.sin(theta)) - 0.05
    # Brows: 17 outer .. 21 inner (screen left), 22 inner .. 26 outer.
    t = np.linspace(0.0, 1.0, 5)
    points[17:22, 0] = -0.85 + 0.7 * t
    points[17:22, 1] = -0.55 - 0.13 * np.sin(math.pi * (0.2 + 0.7 * t))
    points[22:27, 0] = -points[21:16:-1, 0]
    points[22:27, 1] = points[21:16:-1, 1]
    points[17:27, 2] = 0.25 - 0.3 * np.abs(points[17:27, 0])
    # Nose bridge 27-30 and base 31-35.
    points[27:31, 0] = 0.0
    points[27:31, 1] = np.linspace(-0.32, 0.2, 4)
    points[27:31, 2] = np.linspace(0.3, 0.62, 4)
    points[31:36, 0] = np.linspace(-0.22, 0.22, 5)
    points[31:36, 1] = [0.3, 0.33, 0.35, 0.33, 0.3]
    points[31:36, 2] = [0.33, 0.4, 0.45, 0.4, 0.33]
    # Eyes (centre, half width, half height set per face in `_shape`); z at eye depth.
    points[36:48, 2] = 0.2
    # Mouth outer 48-59 and inner 60-67 (neutral, closed).
    points[48:60, 0] = [-0.42, -0.28, -0.11, 0.0, 0.11, 0.28, 0.42, 0.28, 0.12, 0.0, -0.12, -0.28]
    points[48:60, 1] = [0.68, 0.6, 0.56, 0.58, 0.56, 0.6, 0.68, 0.78, 0.83, 0.84, 0.83, 0.78]
    points[60:68, 0] = [-0.34, -0.12, 0.0, 0.12, 0.34, 0.12, 0.0, -0.12]
    points[60:68, 1] = [0.68, 0.665, 0.67, 0.665, 0.68, 0.695, 0.7, 0.695]
    points[48:68, 2] = 0.42 - 0.45 * points[48:68, 0] ** 2
    return points


_TEMPLATE = _template()
# Extra points that move with the head but are not landmarks: a forehead arc closing the face outline
# (from the ear on the screen right over the top to the other ear); the hair is drawn around it.
_ARC = np.linspace(0.0, math.pi, 9)
_FOREHEAD = np.stack([np.cos(_ARC) * 1.0, -0.15 - np.sin(_ARC) * 1.15, -0.7 * (1 - np.sin(_ARC)) - 0.05], axis=1)


@dataclass
class FaceParams:
    """Everything that decides one image; `keypoints` are in image pixels."""

    size: int
    keypoints: np.ndarray  # (68, 2)
    outline: np.ndarray  # (n, 2) face silhouette: jaw then forehead arc
    eye_centres: np.ndarray  # (2, 2)
    eye_radius: float  # iris radius in pixels
    gaze: np.ndarray  # (2,) iris shift, fraction of the eye size
    mouth_open: float
    face_scale: float  # pixels per template unit


class _Uniforms:
    """Uniform draws taken from one pre-drawn vector: one generator call instead of dozens."""

    def __init__(self, rng: np.random.Generator, count: int):
        self.values = rng.random(count).tolist()
        self.next = 0

    def __call__(self, low: float = 0.0, high: float = 1.0) -> float:
        value = self.values[self.next]
        self.next += 1
        return low + (high - low) * value


# Chin profile over jaw points 4-12 and the jaw drop of an open mouth.
_CHIN_WEIGHT = np.cos(np.linspace(-math.pi / 2, math.pi / 2, 9)) ** 2
_JAW_DROP = np.sin(np.linspace(0.15, math.pi - 0.15, 9))
_EYE_X = np.array([-1.0, -0.35, 0.35, 1.0, 0.35, -0.35])
_EYE_Y = np.array([0.0, -1.0, -1.0, 0.0, 0.8, 0.8])


def _shape(u: _Uniforms) -> tuple[np.ndarray, float]:
    """Template with this face's identity and expression; returns (points, mouth opening)."""
    p = _TEMPLATE.copy()
    # Identity.
    p[:, 0] *= u(0.85, 1.12)  # face width
    p[:, 1] *= u(0.9, 1.12)  # face length
    p[4:13, 0] *= 1.0 + u(-0.12, 0.12) * _CHIN_WEIGHT  # pointy or square chin
    eye_gap, eye_y = u(0.4, 0.52), u(-0.34, -0.24)
    eye_w, eye_h = u(0.15, 0.21), u(0.05, 0.08)
    p[27:36, 1] *= u(0.9, 1.15)  # nose length
    p[31:36, 0] *= u(0.8, 1.3)  # nose width
    p[48:68, 0] *= u(0.85, 1.2)  # mouth width
    p[48:68, 1] += u(-0.05, 0.06)
    # Expression.
    for first, sign in ((36, -1.0), (42, 1.0)):
        blink = u(0.1, 1.0) if u() < 0.15 else 1.0
        # Eye contour, clockwise on screen from the left corner: left, upper-left, upper-right, right,
        # lower-right, lower-left. For the right eye (36-41) the left corner is the outer one; for the
        # left eye (42-47) it is the inner one, exactly as the iBUG numbering runs.
        p[first:first + 6, 0] = sign * eye_gap + eye_w * _EYE_X
        p[first:first + 6, 1] = eye_y + eye_h * blink * _EYE_Y
        p[first + (0 if sign < 0 else 3), 1] += 0.012  # outer corners slightly lower
    p[17:27, 1] -= u(-0.06, 0.1)  # brows up or down
    p[[19, 24], 1] -= u(0.0, 0.04)
    mouth_open = u(0.0, 0.3) if u() < 0.45 else 0.0
    p[55:60, 1] += mouth_open
    p[65:68, 1] += mouth_open * 0.95
    p[4:13, 1] += mouth_open * 0.6 * _JAW_DROP
    smile = u(-0.04, 0.12)
    p[[48, 60], :2] += (-smile * 0.5, -smile)
    p[[54, 64], :2] += (smile * 0.5, -smile)
    return p, mouth_open


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def face_geometry(seed: int, index: int, size: int = DEFAULT_SIZE) -> FaceParams:
    """Landmarks and pose of face `index` (its own random stream, so geometry needs no rendering)."""
    u = _Uniforms(np.random.default_rng([seed, index, 0]), 40)
    points, mouth_open = _shape(u)
    yaw, pitch, roll = math.radians(u(-40, 40)), math.radians(u(-18, 18)), math.radians(u(-25, 25))
    rotation = _rotation(yaw, pitch, roll)[:2].T  # weak perspective: rotate, keep x and y
    face_scale = size * u(0.17, 0.3)  # face half-width in pixels
    centre = size * (0.5 + np.array([u(-0.14, 0.14), u(-0.14, 0.14)]))
    eyes = np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])
    forehead = _FOREHEAD[1:-1] * (points[16, 0], 1.0, 1.0)
    projected = np.concatenate([points, eyes, forehead]) @ rotation * face_scale + centre
    keypoints, eye_centres = projected[:68], projected[68:70]
    outline = np.concatenate([keypoints[0:17], projected[70:]])
    eye_radius = (points[36:42, 1].max() - points[36:42, 1].min()) * face_scale * u(0.45, 0.6) + 0.6
    gaze = np.array([u(-0.3, 0.3), u(-0.1, 0.1)])
    return FaceParams(size, keypoints.astype(np.float32), outline, eye_centres, float(eye_radius), gaze,
                      mouth_open, face_scale)


# --- drawing -------------------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel positions (centres at integers) to cv2's fixed-point integer coordinates."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _skin(rng: np.random.Generator) -> np.ndarray:
    """A skin tone from dark to light, with some unnatural tints so colour alone is not the cue."""
    if rng.random() < 0.1:
        return rng.uniform(60, 230, size=3)
    tone = rng.uniform(0.0, 1.0)
    base = np.array([75, 50, 35]) * (1 - tone) + np.array([245, 205, 180]) * tone
    return np.clip(base + rng.normal(0, 12, size=3), 0, 255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour field plus random clutter (boxes, discs, strokes, skin-coloured blobs)."""
    coarse = rng.integers(0, 256, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(rng.integers(3, 12)):
        kind = rng.integers(0, 4)
        colour = _colour(rng)
        x, y = rng.integers(-size // 4, size + size // 4, size=2)
        extent = int(rng.integers(size // 16, size // 3))
        if kind == 0:
            cv2.rectangle(image, (int(x), int(y)), (int(x + extent), int(y + extent * rng.uniform(0.3, 2))),
                          colour, -1)
        elif kind == 1:
            cv2.circle(image, (int(x), int(y)), extent // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            x2, y2 = rng.integers(0, size, size=2)
            cv2.line(image, (int(x), int(y)), (int(x2), int(y2)), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            # A face-coloured blob: skin colour alone must not find the face.
            axes = (extent // 2 + 1, int(extent * rng.uniform(0.3, 0.7)) + 1)
            cv2.ellipse(image, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360,
                        tuple(float(c) for c in _skin(rng)), -1, cv2.LINE_AA)
    return image


def _draw_eye(image: np.ndarray, contour: np.ndarray, centre: np.ndarray, radius: float, gaze: np.ndarray,
              iris: tuple, sclera: tuple, line: tuple) -> None:
    """Sclera, an iris clipped to the lids, and the lid line, all inside a small region of interest."""
    low = np.floor(contour.min(axis=0)).astype(int) - 2
    high = np.ceil(contour.max(axis=0)).astype(int) + 3
    low = np.maximum(low, 0)
    high = np.minimum(high, [image.shape[1], image.shape[0]])
    if np.any(high - low < 2):
        return
    roi = image[low[1]:high[1], low[0]:high[0]]
    local = contour - low
    mask = np.zeros(roi.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [_fixed(local)], 255, cv2.LINE_AA, SUBPIXEL_BITS)
    eye = roi.copy()
    eye[:] = sclera
    span = contour.max(axis=0) - contour.min(axis=0)
    iris_centre = centre - low + gaze * span * 0.5
    cv2.circle(eye, tuple(int(v) for v in np.round(iris_centre * _ONE)), int(radius * _ONE), iris, -1,
               cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.circle(eye, tuple(int(v) for v in np.round(iris_centre * _ONE)), int(radius * 0.45 * _ONE), (15, 15, 15),
               -1, cv2.LINE_AA, SUBPIXEL_BITS)
    alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
    roi[:] = (eye * alpha + roi * (1 - alpha)).astype(np.uint8)
    cv2.polylines(roi, [_fixed(local)], True, line, 1, cv2.LINE_AA, SUBPIXEL_BITS)


def render_face(seed: int, index: int, size: int = DEFAULT_SIZE, geometry: FaceParams | None = None) -> np.ndarray:
    """(size, size, 3) uint8 RGB image of face `index`."""
    face = geometry or face_geometry(seed, index, size)
    rng = np.random.default_rng([seed, index, 1])
    kp = face.keypoints.astype(np.float64)
    image = _background(rng, size)
    skin = _skin(rng)
    skin_t = tuple(float(c) for c in skin)
    dark = tuple(float(c) for c in skin * rng.uniform(0.35, 0.6))
    thick = max(1, int(round(face.face_scale * 0.07)))

    # Hair behind and above the head, then the face.
    if rng.random() < 0.8:
        hair = _colour(rng, 0, 140) if rng.random() < 0.8 else _colour(rng)
        top = face.outline[17:]
        centre = top.mean(axis=0)
        hair_outline = centre + (top - centre) * rng.uniform(1.1, 1.4)
        cv2.fillPoly(image, [_fixed(np.concatenate([face.outline[[16]], hair_outline, face.outline[[0]]]))], hair,
                     cv2.LINE_AA, SUBPIXEL_BITS)
    # Neck below the chin.
    chin = kp[8]
    neck_w = face.face_scale * 0.4
    neck = np.array([kp[5], kp[11], chin + [neck_w, face.face_scale * 1.4], chin + [-neck_w, face.face_scale * 1.4]])
    cv2.fillPoly(image, [_fixed(neck)], tuple(float(c) for c in skin * 0.85), cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.fillPoly(image, [_fixed(face.outline)], skin_t, cv2.LINE_AA, SUBPIXEL_BITS)
    if rng.random() < 0.5:  # the jaw line itself, as a shadow
        cv2.polylines(image, [_fixed(kp[0:17])], False, dark, 1, cv2.LINE_AA, SUBPIXEL_BITS)

    # Brows.
    brow = _colour(rng, 10, 90) if rng.random() < 0.85 else dark
    for first in (17, 22):
        cv2.polylines(image, [_fixed(kp[first:first + 5])], False, brow, thick, cv2.LINE_AA, SUBPIXEL_BITS)
    # Eyes.
    iris = _colour(rng, 20, 160)
    sclera = tuple(float(c) for c in rng.uniform(190, 250, size=3))
    for first, centre in ((36, face.eye_centres[0]), (42, face.eye_centres[1])):
        _draw_eye(image, kp[first:first + 6], centre, face.eye_radius, face.gaze, iris, sclera, dark)
    # Nose: the bridge as a soft line, the base and the nostrils.
    cv2.polylines(image, [_fixed(kp[27:31])], False, tuple(float(c) for c in skin * 0.8), 1, cv2.LINE_AA,
                  SUBPIXEL_BITS)
    cv2.polylines(image, [_fixed(kp[31:36])], False, dark, 1, cv2.LINE_AA, SUBPIXEL_BITS)
    for nostril in (32, 34):
        centre = (kp[nostril] + kp[33]) / 2 - (kp[33] - kp[30]) * 0.3
        r = max(0.8, face.face_scale * 0.035)
        cv2.circle(image, tuple(int(v) for v in np.round(centre * _ONE)), int(r * _ONE), dark, -1,
                   cv2.LINE_AA, SUBPIXEL_BITS)
    # Mouth: lips, then the opening (dark inside, sometimes teeth).
    lips = tuple(float(c) for c in np.clip(skin * [1.0, 0.6, 0.6] * rng.uniform(0.7, 1.05) + [30, 0, 10], 0, 255))
    if rng.random() < 0.1:
        lips = _colour(rng)
    cv2.fillPoly(image, [_fixed(kp[48:60])], lips, cv2.LINE_AA, SUBPIXEL_BITS)
    if face.mouth_open > 0.02:
        cv2.fillPoly(image, [_fixed(kp[60:68])], (40, 10, 15), cv2.LINE_AA, SUBPIXEL_BITS)
        if rng.random() < 0.6:
            # Upper teeth: from the upper inner lip 40% of the way down to the lower one.
            teeth = np.concatenate([kp[60:65], kp[[64, 63, 62, 61, 60]] * 0.6 + kp[[64, 65, 66, 67, 60]] * 0.4])
            cv2.fillPoly(image, [_fixed(teeth)], (235, 230, 215), cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.polylines(image, [_fixed(kp[60:68])], True, tuple(float(c) for c in np.array(lips) * 0.6), 1,
                  cv2.LINE_AA, SUBPIXEL_BITS)

    # Occluders over part of the face (points under them stay labelled).
    if rng.random() < 0.4:
        for _ in range(rng.integers(1, 3)):
            _occluder(rng, image, kp, face.face_scale)

    # Lighting, blur, noise.
    direction = rng.normal(size=2) * rng.uniform(0.0, 0.6)
    ramp = (np.arange(size, dtype=np.float32) - size / 2) / size
    light = np.clip(1.0 + direction[0] * ramp[None, :] + direction[1] * ramp[:, None], 0.3, 1.7)
    light *= rng.uniform(0.6, 1.25)
    out = image.astype(np.float32)
    out *= light[:, :, None]
    sigma = rng.uniform(0.0, 1.3)
    if sigma > 0.35:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    # Sensor noise: a window of a fixed noise field, cheaper than fresh normals and still random.
    field = _noise_field(size)
    ox, oy = rng.integers(0, size, size=2)
    out += field[oy:oy + size, ox:ox + size, None] * rng.uniform(0, 10)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _noise_field(size: int) -> np.ndarray:
    """A constant (2 size, 2 size) field of unit normal noise (read-only)."""
    field = np.random.default_rng(20180908).standard_normal((2 * size, 2 * size), dtype=np.float32)
    field.setflags(write=False)
    return field


def _occluder(rng: np.random.Generator, image: np.ndarray, kp: np.ndarray, face_scale: float) -> None:
    """A hand, a bar, sunglasses or a blob over a random part of the face."""
    target = kp[rng.integers(0, 68)] + rng.normal(0, face_scale * 0.2, size=2)
    colour = _colour(rng) if rng.random() < 0.6 else tuple(float(c) for c in _skin(rng))
    kind = rng.integers(0, 3)
    if kind == 0:  # ellipse (hand, ball, microphone)
        axes = face_scale * rng.uniform(0.25, 0.6, size=2)
        cv2.ellipse(image, tuple(int(v) for v in np.round(target * _ONE)),
                    tuple(int(v) for v in np.round(axes * _ONE)), float(rng.uniform(0, 180)), 0, 360, colour,
                    -1, cv2.LINE_AA, SUBPIXEL_BITS)
    elif kind == 1:  # a bar crossing the face
        angle = rng.uniform(0, math.pi)
        half = face_scale * 2.5 * np.array([math.cos(angle), math.sin(angle)])
        width = max(2, int(face_scale * rng.uniform(0.15, 0.4)))
        cv2.line(image, tuple(int(v) for v in np.round((target - half) * _ONE)),
                 tuple(int(v) for v in np.round((target + half) * _ONE)), colour, width, cv2.LINE_AA, SUBPIXEL_BITS)
    else:  # sunglasses over both eyes
        for first in (36, 42):
            centre = kp[first:first + 6].mean(axis=0)
            r = face_scale * rng.uniform(0.2, 0.3)
            cv2.circle(image, tuple(int(v) for v in np.round(centre * _ONE)), int(r * _ONE), (20, 20, 25), -1,
                       cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.line(image, tuple(int(v) for v in np.round(kp[39] * _ONE)), tuple(int(v) for v in np.round(kp[42] * _ONE)),
                 (20, 20, 25), max(1, int(face_scale * 0.05)), cv2.LINE_AA, SUBPIXEL_BITS)


# --- the source ----------------------------------------------------------------------------------


def synthetic_source(count: int = DEFAULT_COUNT, seed: int = 0, size: int = DEFAULT_SIZE, name: str = "") -> Source:
    """`count` faces of `size` px, deterministic by (seed, index), rendered when loaded."""
    samples = []
    for index in range(count):
        face = face_geometry(seed, index, size)
        visible = np.ones(68, dtype=np.float32)
        centre, side = box_from_keypoints(face.keypoints, visible)
        samples.append(Sample(f"synthetic:{seed}:{index}", face.keypoints, visible, centre, side,
                              {"index": index, "seed": seed, "size": size}))
    return Source(name or f"synthetic:{count}:{seed}", SPECS["300w"], samples, [], render_sample)


def render_sample(sample: Sample) -> np.ndarray:
    """The image of a synthetic sample (a module-level function, so sources pickle to workers)."""
    return render_face(sample.meta["seed"], sample.meta["index"], sample.meta["size"])
