"""Dataset specs: what the landmarks of one landmark set are called, how they swap under a horizontal
flip, how they are drawn, how a crop is framed around them and how they are scored (the normaliser, and
the joints and groups the metrics report).

All indices are 0-based. A spec is a fact sheet, shared by every dataset with that landmark set.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

import numpy as np

from dunet import DunetError

# Normaliser kinds (the `normaliser` field is `(kind, argument)`):
#   ("interocular", (a, b)) / ("torso", (a, b)): distance between landmarks a and b (NME, PCK@0.2);
#   ("head", None): the annotated head size of MPII PCKh (0.6 x head-box diagonal, `meta["head_size"]`);
#   ("bbox", None): the side of the sample's square box (`Sample.scale`).
NORMALISER_KINDS = ("interocular", "torso", "head", "bbox")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    keypoints: tuple[str, ...]
    # Left/right pairs swapped by a horizontal flip. None = unknown, so flipping is switched off
    # (flipping a set with unknown sides would silently swap labels).
    flip_pairs: tuple[tuple[int, int], ...] | None
    skeleton: tuple[tuple[int, int], ...] = ()
    normaliser: tuple[str, tuple[int, int] | None] = ("bbox", None)
    # Crop side = box side x this: the dataset's convention for context around the box.
    box_margin: float = 1.25
    # How dunet.metrics scores the set beyond its normaliser: the joints of the headline mean (None = all),
    # the joint groups of the usual table, joint subsets reported as extra figures, and the points whose
    # means are the two eye centres of the inter-pupil NME.
    scored: tuple[int, ...] | None = None
    groups: tuple[tuple[str, tuple[int, ...]], ...] = ()
    subsets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    eye_centres: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        k = len(self.keypoints)
        if k < 1:
            raise DunetError(f"dataset spec {self.name!r}: no keypoints")
        problem = names_problem(self.keypoints)
        if problem:
            raise DunetError(f"dataset spec {self.name!r}: {problem}")
        seen: set[int] = set()
        for a, b in self.flip_pairs or ():
            if not (0 <= a < k and 0 <= b < k) or a == b or a in seen or b in seen:
                raise DunetError(f"dataset spec {self.name!r}: bad flip pair ({a}, {b}) for {k} keypoints")
            seen.update((a, b))
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise DunetError(f"dataset spec {self.name!r}: skeleton edge ({a}, {b}) out of range for {k} keypoints")
        kind, arg = self.normaliser
        if kind not in NORMALISER_KINDS:
            raise DunetError(f"dataset spec {self.name!r}: unknown normaliser {kind!r}")
        if kind in ("interocular", "torso") and not (arg and all(0 <= i < k for i in arg)):
            raise DunetError(f"dataset spec {self.name!r}: normaliser {kind} needs two landmark indices")
        if self.box_margin <= 0:
            raise DunetError(f"dataset spec {self.name!r}: box_margin must be > 0")
        scoring = [*(self.scored or ()), *(j for _, joints in self.groups + self.subsets for j in joints),
                   *(j for eye in self.eye_centres or () for j in eye)]
        if not all(0 <= j < k for j in scoring):
            raise DunetError(f"dataset spec {self.name!r}: a scored joint, group, subset or eye point is out of "
                             f"range for {k} keypoints")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def can_flip(self) -> bool:
        return self.flip_pairs is not None

    def flip_index(self) -> np.ndarray:
        """Permutation p such that flipped_keypoints = keypoints_mirrored[p]."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs or ():
            perm[a], perm[b] = b, a
        return perm

    def sided(self) -> np.ndarray:
        """+1 for the first landmark of each flip pair, -1 for the second, 0 for unpaired (for drawing)."""
        side = np.zeros(self.num_keypoints, dtype=np.int64)
        for a, b in self.flip_pairs or ():
            side[a], side[b] = 1, -1
        return side


def names_problem(names) -> str | None:
    """What makes `names` unusable as keypoint names, or None: a name given twice would pair its points with
    either label (and switch flipping off), an empty one names nothing."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not str(name).strip():
            return f"keypoint {i} has an empty name"
        if name in seen:
            return f"the name {name!r} is given twice (keypoints {seen[name]} and {i}); each keypoint needs its own"
        seen[name] = i
    return None


def _chain(first: int, last: int, closed: bool = False) -> list[tuple[int, int]]:
    edges = [(i, i + 1) for i in range(first, last)]
    if closed:
        edges.append((last, first))
    return edges


def _mirror_pairs(left: list[int], right: list[int]) -> list[tuple[int, int]]:
    return list(zip(left, right))


# --- iBUG 68 (300-W) -------------------------------------------------------------------------------
# 0-16 jaw (from the subject's right ear, image left), 17-21 / 22-26 brows, 27-30 nose bridge,
# 31-35 nostrils, 36-41 / 42-47 eyes (clockwise from the outer corner), 48-59 outer lips, 60-67 inner lips.
_IBUG_GROUPS = [
    ("jaw", 0, 16), ("right_brow", 17, 21), ("left_brow", 22, 26), ("nose_bridge", 27, 30),
    ("nose_base", 31, 35), ("right_eye", 36, 41), ("left_eye", 42, 47), ("outer_lip", 48, 59),
    ("inner_lip", 60, 67),
]
IBUG68_NAMES = tuple(f"{group}_{i - first}" for group, first, last in _IBUG_GROUPS for i in range(first, last + 1))
IBUG68_FLIP = tuple(
    _mirror_pairs(list(range(0, 8)), list(range(16, 8, -1)))  # jaw
    + _mirror_pairs(list(range(17, 22)), list(range(26, 21, -1)))  # brows
    + [(31, 35), (32, 34)]  # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
    + [(60, 64), (61, 63), (67, 65)]  # inner lips
)
IBUG68_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))  # each eye centre is the mean of its contour
IBUG68_SKELETON = tuple(
    _chain(0, 16) + _chain(17, 21) + _chain(22, 26) + _chain(27, 30) + [(30, 33)] + _chain(31, 35)
    + _chain(36, 41, closed=True) + _chain(42, 47, closed=True) + _chain(48, 59, closed=True)
    + _chain(60, 67, closed=True)
)

# --- WFLW 98 -----------------------------------------------------------------------------------------
# 0-32 contour, 33-41 / 42-50 brows (closed loops), 51-54 nose bridge, 55-59 nose base,
# 60-67 / 68-75 eyes, 76-87 outer lips, 88-95 inner lips, 96 / 97 pupils.
_WFLW_GROUPS = [
    ("contour", 0, 32), ("right_brow", 33, 41), ("left_brow", 42, 50), ("nose_bridge", 51, 54),
    ("nose_base", 55, 59), ("right_eye", 60, 67), ("left_eye", 68, 75), ("outer_lip", 76, 87),
    ("inner_lip", 88, 95), ("right_pupil", 96, 96), ("left_pupil", 97, 97),
]
WFLW98_NAMES = tuple(
    group if first == last else f"{group}_{i - first}"
    for group, first, last in _WFLW_GROUPS for i in range(first, last + 1)
)
WFLW98_FLIP = tuple(
    _mirror_pairs(list(range(0, 16)), list(range(32, 16, -1)))  # contour
    + _mirror_pairs(list(range(33, 38)), list(range(46, 41, -1)))  # upper brows
    + _mirror_pairs(list(range(38, 42)), list(range(50, 46, -1)))  # lower brows
    + [(55, 59), (56, 58)]  # nose base
    + _mirror_pairs(list(range(60, 65)), list(range(72, 67, -1)))  # eyes: outer corner .. inner corner
    + [(65, 75), (66, 74), (67, 73)]  # lower eyelids
    + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84)]  # outer lips
    + [(88, 92), (89, 91), (95, 93)]  # inner lips
    + [(96, 97)]  # pupils
)
WFLW98_EYES = ((96,), (97,))  # the annotated pupils
WFLW98_SKELETON = tuple(
    _chain(0, 32) + _chain(33, 41, closed=True) + _chain(42, 50, closed=True) + _chain(51, 54) + [(54, 57)]
    + _chain(55, 59) + _chain(60, 67, closed=True) + _chain(68, 75, closed=True) + _chain(76, 87, closed=True)
    + _chain(88, 95, closed=True)
)

# --- LSP 14 ------------------------------------------------------------------------------------------
LSP14_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
)
LSP14_FLIP = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))
LSP14_SKELETON = (
    (0, 1), (1, 2), (3, 4), (4, 5), (2, 3), (2, 8), (3, 9), (6, 7), (7, 8), (8, 12), (9, 12),
    (9, 10), (10, 11), (12, 13),
)
# The usual grouped table: each group is the mean of its joints' PCK.
LSP14_GROUPS = (("Head", (12, 13)), ("Sho.", (8, 9)), ("Elb.", (7, 10)), ("Wri.", (6, 11)), ("Hip", (2, 3)),
                ("Knee", (1, 4)), ("Ank.", (0, 5)))
# The 12 joints that body models such as MediaPipe's BlazePose also predict (all but neck and head top): the
# fair set for comparing with them.
LSP14_SUBSETS = (("body12", tuple(range(12))),)

# --- MPII 16 -----------------------------------------------------------------------------------------
MPII16_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)
MPII16_FLIP = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII16_SKELETON = (
    (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12),
    (12, 7), (7, 13), (13, 14), (14, 15),
)
MPII16_GROUPS = (("Head", (8, 9)), ("Sho.", (12, 13)), ("Elb.", (11, 14)), ("Wri.", (10, 15)), ("Hip", (2, 3)),
                 ("Knee", (1, 4)), ("Ank.", (0, 5)))
MPII16_SCORED = tuple(j for j in range(16) if j not in (6, 7))  # the official mean leaves pelvis and thorax out

# --- COCO 17 -----------------------------------------------------------------------------------------
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
COCO17_FLIP = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO17_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

SPECS: dict[str, DatasetSpec] = {
    "300w": DatasetSpec("300w", IBUG68_NAMES, IBUG68_FLIP, IBUG68_SKELETON, ("interocular", (36, 45)), 1.25,
                        eye_centres=IBUG68_EYES),
    "wflw": DatasetSpec("wflw", WFLW98_NAMES, WFLW98_FLIP, WFLW98_SKELETON, ("interocular", (60, 72)), 1.25,
                        eye_centres=WFLW98_EYES),
    # LSP: PCK@0.2 of the torso (right shoulder to left hip); crop = 1.4375 x the joints' box (facts sheet).
    "lsp": DatasetSpec("lsp", LSP14_NAMES, LSP14_FLIP, LSP14_SKELETON, ("torso", (8, 3)), 1.4375,
                       groups=LSP14_GROUPS, subsets=LSP14_SUBSETS),
    # MPII: PCKh of the annotated head box; crop = 1.25 x the annotated person scale (facts sheet).
    "mpii": DatasetSpec("mpii", MPII16_NAMES, MPII16_FLIP, MPII16_SKELETON, ("head", None), 1.25,
                        scored=MPII16_SCORED, groups=MPII16_GROUPS),
    "coco": DatasetSpec("coco", COCO17_NAMES, COCO17_FLIP, COCO17_SKELETON, ("bbox", None), 1.25),
}


# --- specs of a user's own data ------------------------------------------------------------------

def _other_side(name: str) -> str | None:
    """The name of the mirrored landmark, or None if the name carries no side."""
    lower = name.lower()
    for word, other in (("left", "right"), ("right", "left")):
        if word in lower:
            start = lower.index(word)
            original = name[start:start + len(word)]
            if original.isupper():
                other = other.upper()
            elif original[0].isupper():
                other = other.capitalize()
            return name[:start] + other + name[start + len(word):]
    # One-letter side tokens: "l_wrist", "wrist_r", "eye.l".
    match = re.search(r"(^|[_\-\s.])([lLrR])(?=$|[_\-\s.])", name)
    if match:
        letter = match.group(2)
        swapped = {"l": "r", "r": "l", "L": "R", "R": "L"}[letter]
        return name[:match.start(2)] + swapped + name[match.end(2):]
    return None


def flip_pairs_from_names(names: tuple[str, ...] | list[str]) -> tuple[tuple[int, int], ...] | None:
    """Pairs found by swapping left/right in the names; None if a sided name has no partner,
    or if no name carries a side while the set might still be asymmetric (we cannot know)."""
    index = {n: i for i, n in enumerate(names)}
    pairs: list[tuple[int, int]] = []
    any_side = False
    for i, name in enumerate(names):
        other = _other_side(name)
        if other is None:
            continue
        any_side = True
        j = index.get(other)
        if j is None:
            return None
        if i < j:
            pairs.append((i, j))
    return tuple(pairs) if any_side else None


def spec_from_names(
    name: str,
    names: list[str] | tuple[str, ...],
    skeleton: list | tuple = (),
    flip_pairs: list | tuple | None = None,
) -> DatasetSpec:
    """A spec for a custom landmark set; a known set (same names as a shipped spec) gets the shipped spec, and
    `flip_pairs` given for it must be its own."""
    names = tuple(str(n) for n in names)
    if flip_pairs is None:
        pairs = flip_pairs_from_names(names)
    else:
        try:
            pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
        except (TypeError, ValueError):
            raise DunetError(f"{name}: flip_pairs must be a list of [i, j] index pairs, got {flip_pairs!r}") from None
    custom = DatasetSpec(name, names, pairs, tuple(tuple(e) for e in skeleton), ("bbox", None), 1.25)  # checks all
    known = next((spec for spec in SPECS.values() if names == spec.keypoints), None)
    if known is None:
        return custom
    if flip_pairs is not None and {frozenset(p) for p in pairs} != {frozenset(p) for p in known.flip_pairs}:
        raise DunetError(f"{name}: flip_pairs {[list(p) for p in pairs]} are not the left/right pairs of the "
                         f"{known.name} keypoints these names are ({[list(p) for p in known.flip_pairs]}, 0-based); "
                         "fix them or leave them out")
    return known


def spec_from_coco_category(category: dict, num_keypoints: int, where: str = "") -> DatasetSpec:
    """Spec from a COCO category: `keypoints` names, 1-based `skeleton`, and optionally our own
    `flip_pairs` key (0-based pairs) for sets whose names carry no left/right.

    A category without keypoint names (as some face datasets ship), or no category, with 17, 68 or 98 points is
    taken to be COCO-17, iBUG-68 or WFLW-98: generic names would lose the names and flip pairs of the set that
    a COCO file of that count almost always holds."""
    where = where or "COCO file"
    names = category.get("keypoints") or []
    if not names:
        by_count = {17: "coco", 68: "300w", 98: "wflw"}
        if num_keypoints in by_count:
            return SPECS[by_count[num_keypoints]]
        names = [f"kp{i}" for i in range(num_keypoints)]
    if len(names) != num_keypoints:
        raise DunetError(
            f"{where}: category {category.get('name', '?')!r} names {len(names)} keypoints "
            f"but annotations have {num_keypoints}"
        )
    skeleton = []
    for edge in category.get("skeleton") or []:
        if len(edge) != 2 or not all(isinstance(i, int) and 1 <= i <= len(names) for i in edge):
            raise DunetError(f"{where}: bad skeleton edge {edge!r} (COCO skeletons are 1-based keypoint indices)")
        skeleton.append((edge[0] - 1, edge[1] - 1))
    try:
        return spec_from_names(str(category.get("name", "custom")), names, skeleton, category.get("flip_pairs"))
    except DunetError as err:
        raise DunetError(f"{where}: {err}") from None


def with_normaliser(spec: DatasetSpec, text: str) -> DatasetSpec:
    """`spec` scored by another normaliser: "box" (the object's box), "interocular:A,B" or "torso:A,B" (the
    distance between the named landmarks); "" keeps the spec's own. For custom points (`data.normaliser`)."""
    if not text:
        return spec
    kind, _, names = text.partition(":")
    kind = {"box": "bbox"}.get(kind.strip(), kind.strip())
    if kind == "bbox" and not names:
        return dataclasses.replace(spec, normaliser=("bbox", None))
    parts = [n.strip() for n in names.split(",")]
    if kind not in ("interocular", "torso") or len(parts) != 2:
        raise DunetError(f"normaliser {text!r}: use box, interocular:NAME,NAME or torso:NAME,NAME")
    missing = [n for n in parts if n not in spec.keypoints]
    if missing:
        raise DunetError(f"normaliser {text!r}: no keypoint named {', '.join(missing)} in {spec.name} "
                         f"(keypoints: {', '.join(spec.keypoints)})")
    return dataclasses.replace(spec, normaliser=(kind, tuple(spec.keypoints.index(n) for n in parts)))


def spec_to_dict(spec: DatasetSpec) -> dict:
    """A spec as plain JSON types, for a model card."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


SCORING_FIELDS = ("scored", "groups", "subsets", "eye_centres")  # added after dunet 0.1.0


def spec_from_dict(data: dict) -> DatasetSpec:
    def indices(value):
        return None if value is None else tuple(int(i) for i in value)

    def pairs(value):
        return None if value is None else tuple(indices(p) for p in value)

    def named(value):
        return tuple((str(name), indices(joints)) for name, joints in value)

    keypoints = tuple(data["keypoints"])
    if not any(key in data for key in SCORING_FIELDS):  # from dunet 0.1.0: a shipped set gets its scoring back
        shipped = next((spec for spec in SPECS.values() if spec.keypoints == keypoints), None)
        if shipped is not None:
            data = {**{key: getattr(shipped, key) for key in SCORING_FIELDS}, **data}
    norm_kind, norm_arg = data.get("normaliser", ("bbox", None))
    return DatasetSpec(
        name=data["name"],
        keypoints=keypoints,
        flip_pairs=pairs(data.get("flip_pairs")),
        skeleton=pairs(data.get("skeleton")) or (),
        normaliser=(norm_kind, indices(norm_arg)),
        box_margin=float(data.get("box_margin", 1.25)),
        scored=indices(data.get("scored")),
        groups=named(data.get("groups", ())),
        subsets=named(data.get("subsets", ())),
        eye_centres=pairs(data.get("eye_centres")),
    )
