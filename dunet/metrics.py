"""Landmark-localization metrics of the field, in plain numpy.

Conventions (the same everywhere in this module):
- `pred`, `gt`: (N, K, 2) pixel coordinates; `visible`: (N, K) bool, True where the ground truth
  has a position ("labelled"). Occluded but annotated points count as labelled, as in the standard
  protocols; ground-truth points with NaN/inf coordinates are treated as unlabelled.
- What is scored is the DatasetSpec's: its normaliser kind picks the metric (inter-ocular: NME; torso,
  bbox: PCK@0.2; head: PCKh@0.5), `normaliser` is the spec's length per sample
  (`dunet.data.sample.normalisers`), and the spec names the scored joints, groups and subsets.
- A sample whose normaliser is undefined (a needed point unlabelled, zero length) or that has no
  labelled point gets NaN and is left out of every aggregate; `evaluate` reports how many in
  `n_excluded`.
- Units: per-sample NME from `nme` is a fraction of the normaliser (CED curves, FR and AUC use it);
  `evaluate` reports `nme_*` in percent, as papers do (3.26 means 3.26 %); FR and AUC are fractions
  in [0, 1]; PCK values are percent.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dunet import DunetError

if TYPE_CHECKING:  # metrics stay plain numpy: importing dunet.data would load the data pipeline
    from dunet.data.spec import DatasetSpec

CED_THRESHOLDS = (0.08, 0.10)
# The headline metric of each normaliser kind (DatasetSpec.normaliser): its key, and the error, as a fraction
# of the normaliser, under which a point counts as right (PCK's alpha; the failure threshold of NME).
HEADLINES = {"interocular": ("nme_io", 0.08), "torso": ("pck_0.2", 0.2), "bbox": ("pck_0.2", 0.2),
             "head": ("pckh_0.5", 0.5)}


# ---------------------------------------------------------------------------------------------
# inputs


def check_inputs(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Validate shapes and return float64 pred, gt and a bool labelled mask (non-finite gt -> unlabelled)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[2] != 2:
        raise DunetError(f"ground truth must have shape (N, K, 2), got {gt.shape}")
    if pred.shape != gt.shape:
        raise DunetError(f"predictions have shape {pred.shape} but the ground truth has shape {gt.shape}")
    if gt.shape[0] == 0:
        raise DunetError("no samples to evaluate")
    if not np.isfinite(pred).all():
        raise DunetError("predictions contain NaN or infinite coordinates")
    if visible is None:
        visible = np.ones(gt.shape[:2], dtype=bool)
    visible = np.asarray(visible)
    if visible.shape != gt.shape[:2]:
        raise DunetError(f"visibility mask has shape {visible.shape}, expected {gt.shape[:2]}")
    visible = visible.astype(bool) & np.isfinite(gt).all(axis=2)
    return pred, gt, visible


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K) Euclidean distance between predicted and ground-truth points."""
    return np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64), axis=-1)


@contextlib.contextmanager
def _quiet_all_nan() -> Iterator[None]:
    """Silence numpy's 'All-NaN slice' / 'Mean of empty slice' warnings: NaN is the intended answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _positive_or_nan(lengths: np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.float64)
    return np.where(np.isfinite(lengths) & (lengths > 0), lengths, np.nan)


# ---------------------------------------------------------------------------------------------
# the two extra face normalisers: (N,) lengths from the ground truth, NaN where undefined


def inter_pupil(gt: np.ndarray, visible: np.ndarray, eyes: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    """Distance between the eye centres, each the mean of its points in `eyes` (DatasetSpec.eye_centres).
    Every point of both eyes must be labelled."""
    left, right = (list(eye) for eye in eyes)
    lengths = np.linalg.norm(gt[:, left].mean(axis=1) - gt[:, right].mean(axis=1), axis=-1)
    return _positive_or_nan(np.where(visible[:, left + right].all(axis=1), lengths, np.nan))


def box_size(gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """sqrt(width * height) of the bounding box of the labelled ground-truth points."""
    masked = np.where(visible[..., None], gt, np.nan)
    with _quiet_all_nan():
        size = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)
    return _positive_or_nan(np.sqrt(size[:, 0] * size[:, 1]))


# ---------------------------------------------------------------------------------------------
# face metrics


def nme(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None, normaliser: np.ndarray) -> np.ndarray:
    """(N,) per-sample normalised mean error as a fraction: mean over labelled points of
    error / normaliser. NaN for samples without labelled points or with an undefined normaliser."""
    pred, gt, visible = check_inputs(pred, gt, visible)
    normaliser = _positive_or_nan(np.broadcast_to(np.asarray(normaliser, dtype=np.float64), gt.shape[:1]))
    errors = np.where(visible, point_errors(pred, gt), 0.0)
    count = visible.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_error = np.where(count > 0, errors.sum(axis=1) / count, np.nan)
    return mean_error / normaliser


def _finite(errors: np.ndarray) -> np.ndarray:
    errors = np.asarray(errors, dtype=np.float64).ravel()
    return errors[np.isfinite(errors)]


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Fraction of samples with error > threshold (NaN samples left out)."""
    errors = _finite(errors)
    return float(np.mean(errors > threshold)) if errors.size else float("nan")


def ced_auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the cumulative error distribution from 0 to `threshold`, divided by `threshold`.

    The CED is the step function x -> fraction of samples with error <= x, so its integral is exact:
    each sample contributes max(0, threshold - e) / threshold. Implementations that sample the curve
    (e.g. trapezoids every 1e-4) approximate this value."""
    errors = _finite(errors)
    if not errors.size:
        return float("nan")
    return float(np.mean(np.clip(1.0 - errors / threshold, 0.0, 1.0)))


def ced_curve(errors: np.ndarray, max_error: float = 0.1, num: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of samples with error <= threshold) on [0, max_error]."""
    errors = np.sort(_finite(errors))
    thresholds = np.linspace(0.0, max_error, num)
    if not errors.size:
        return thresholds, np.zeros_like(thresholds)
    return thresholds, np.searchsorted(errors, thresholds, side="right") / errors.size


def plot_ced(errors: dict[str, np.ndarray], path: str | Path, max_error: float = 0.1) -> Path:
    """Write a PNG with one CED curve per entry of `errors` (per-sample NME as fractions)."""
    # The Figure/Agg-canvas API draws off-screen without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in errors.items():
        x, y = ced_curve(values, max_error)
        label = f"{name} (AUC {ced_auc(values, max_error):.4f}, FR {failure_rate(values, max_error):.2%})"
        ax.plot(x * 100, y, label=label)
    ax.set_xlim(0, max_error * 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of images")
    ax.set_title("Cumulative error distribution")
    ax.grid(True, alpha=0.3)
    if errors:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    except OSError as err:
        raise DunetError(f"{path}: cannot write the CED plot ({err.strerror or err})") from None
    return path


# ---------------------------------------------------------------------------------------------
# pose metrics


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None, normaliser: np.ndarray,
        alpha: float) -> tuple[float, np.ndarray]:
    """Percentage of correct keypoints: a labelled point is correct when its error <= alpha * normaliser.

    Returns (mean over all labelled points of samples with a defined normaliser, (K,) per joint),
    both in percent; NaN where nothing was counted."""
    pred, gt, visible = check_inputs(pred, gt, visible)
    normaliser = _positive_or_nan(np.broadcast_to(np.asarray(normaliser, dtype=np.float64), gt.shape[:1]))
    counted = visible & np.isfinite(normaliser)[:, None]
    with np.errstate(invalid="ignore"):
        correct = (point_errors(pred, gt) <= alpha * normaliser[:, None]) & counted
    per_joint_count = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(per_joint_count > 0, 100.0 * correct.sum(axis=0) / per_joint_count, np.nan)
    total = counted.sum()
    mean = 100.0 * correct.sum() / total if total else float("nan")
    return float(mean), per_joint


def group_table(per_joint: np.ndarray, groups: dict[str, tuple[int, ...]], mean: float) -> dict[str, float]:
    """The usual grouped row (Head, Sho., ..., Mean): each group is the mean of its joints' values."""
    table = {}
    with _quiet_all_nan():
        for name, joints in groups.items():
            table[name] = float(np.nanmean(per_joint[list(joints)]))
    table["Mean"] = float(mean)
    return table


# ---------------------------------------------------------------------------------------------
# the entry point of `dunet eval`


def evaluate(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None, spec: DatasetSpec,
             normaliser: np.ndarray) -> dict:
    """All metrics of a data set as a JSON-ready dict (NaN -> None), as its `spec` scores it; `normaliser`:
    (N,) the spec's normaliser of each sample (dunet.data.sample.normalisers). By the normaliser kind:

    - "interocular" (faces): nme_io (on `normaliser`; the headline), nme_ip (by `spec.eye_centres`, None
      without them), nme_box (percent), and fr_0.08, auc_0.08, fr_0.10, auc_0.10 (fractions) of the headline
      NME, which the CED plot shows too.
    - "torso", "bbox": pck_0.2; "head": pckh_0.5. Both over `spec.scored` (all joints by default), with
      per_joint (named by the spec), per_group (`spec.groups`, if any) and `pck_0.2_NAME` for each of
      `spec.subsets` (LSP: pck_0.2_body12).
    Always: n (samples given), n_excluded (samples without a defined score), mean_error_px (over all
    labelled points)."""
    pred, gt, visible = check_inputs(pred, gt, visible)
    num, points = gt.shape[:2]
    if points != spec.num_keypoints:
        raise DunetError(f"the data has {points} landmarks but the {spec.name} spec has {spec.num_keypoints}")
    normaliser = np.asarray(normaliser, dtype=np.float64)
    if normaliser.shape != (num,):
        raise DunetError(f"normaliser must have one value per sample, shape ({num},), got {normaliser.shape}")
    labelled_errors = point_errors(pred, gt)[visible]
    result: dict = {"n": int(num), "mean_error_px": float(labelled_errors.mean()) if labelled_errors.size else None}
    kind = spec.normaliser[0]
    if kind == "interocular":
        metrics, valid = _face_metrics(pred, gt, visible, normaliser, spec.eye_centres)
    else:
        key, alpha = HEADLINES[kind]
        metrics, valid = _pose_metrics(pred, gt, visible, normaliser, alpha, key, spec)
    result["n_excluded"] = int(num - valid)
    result.update(metrics)
    return _json_ready(result)


def _face_metrics(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, normaliser: np.ndarray,
                  eyes: tuple | None) -> tuple[dict, int]:
    """NME by the spec's normaliser (the headline; FR, AUC and the CED are on it), by the eye centres, by the box."""
    headline = nme(pred, gt, visible, normaliser)
    pupils = nme(pred, gt, visible, inter_pupil(gt, visible, eyes)) if eyes is not None else np.empty(0)
    boxes = nme(pred, gt, visible, box_size(gt, visible))

    def mean_percent(errors: np.ndarray) -> float | None:
        values = _finite(errors)
        return 100.0 * float(values.mean()) if values.size else None

    metrics = {"nme_io": mean_percent(headline), "nme_ip": mean_percent(pupils), "nme_box": mean_percent(boxes),
               "ced_normaliser": "inter_ocular"}
    for t in CED_THRESHOLDS:
        metrics[f"fr_{t:.2f}"] = failure_rate(headline, t)
        metrics[f"auc_{t:.2f}"] = ced_auc(headline, t)
    return metrics, int(np.isfinite(headline).sum())


def _pose_metrics(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, normaliser: np.ndarray,
                  alpha: float, key: str, spec: DatasetSpec) -> tuple[dict, int]:
    def pck_of(joints) -> float:
        joints = list(joints)
        return pck(pred[:, joints], gt[:, joints], visible[:, joints], normaliser, alpha)[0]

    _, per_joint = pck(pred, gt, visible, normaliser, alpha)
    mean = pck_of(spec.scored if spec.scored is not None else range(spec.num_keypoints))
    metrics: dict = {key: mean, "per_joint": {name: float(v) for name, v in zip(spec.keypoints, per_joint)}}
    if spec.groups:
        metrics["per_group"] = group_table(per_joint, dict(spec.groups), mean)
    for name, joints in spec.subsets:
        metrics[f"{key}_{name}"] = pck_of(joints)
    valid = np.isfinite(_positive_or_nan(normaliser)) & visible.any(axis=1)
    return metrics, int(valid.sum())


def _json_ready(value):
    """Floats that are NaN/inf become None (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: _json_ready(v) for key, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------
# human-readable output

_PERCENT_KEYS = ("nme_", "pck", "per_joint", "per_group")


def format_value(key: str, value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return str(value)
    if key.startswith(_PERCENT_KEYS):
        return f"{value:.2f} %"
    if key.startswith(("fr_", "auc_")):
        return f"{value:.4f}"
    return f"{value:.3f}"


def format_table(metrics: dict) -> str:
    """Metrics from `evaluate` as aligned text: scalars one per line, the grouped PCK as the usual
    one-row table, per-joint values one per line."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    width = max((len(k) for k in scalars), default=0)
    lines = [f"{key.ljust(width)}  {format_value(key, value)}" for key, value in scalars.items()]
    groups = metrics.get("per_group")
    if groups:
        cells = [(name, "n/a" if v is None else f"{v:.1f}") for name, v in groups.items()]
        widths = [max(len(a), len(b)) for a, b in cells]
        lines.append("")
        lines.append("  ".join(name.rjust(w) for (name, _), w in zip(cells, widths)))
        lines.append("  ".join(value.rjust(w) for (_, value), w in zip(cells, widths)))
    joints = metrics.get("per_joint")
    if joints:
        name_width = max(len(name) for name in joints)
        lines.append("")
        lines.append("per joint:")
        lines.extend(f"  {name.ljust(name_width)}  {format_value('per_joint', v):>8}" for name, v in joints.items())
    return "\n".join(lines)


def confidence_auc(scores, errors, threshold: float) -> float | None:
    """How well landmark scores separate good points from bad ones: the ROC AUC of `scores` as a detector
    of "error <= threshold" (1 = every good point scores above every bad one, 0.5 = chance). `scores` and
    `errors` have the same shape (e.g. (N, K): errors normalised like the metric, NaN = unlabelled, left
    out). None when all points are good or all bad."""
    scores, errors = np.asarray(scores, np.float64).ravel(), np.asarray(errors, np.float64).ravel()
    if scores.shape != errors.shape:
        raise DunetError(f"confidence_auc: {scores.size} scores but {errors.size} errors")
    keep = np.isfinite(errors) & np.isfinite(scores)
    good = errors[keep] <= threshold
    scores = scores[keep]
    n_good, n_bad = int(good.sum()), int((~good).sum())
    if n_good == 0 or n_bad == 0:
        return None
    # Mann-Whitney U with average ranks for ties: P(score of a good point > score of a bad one).
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))
