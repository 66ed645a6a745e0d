"""Evaluation: predict every sample of a data set (centre crop, no augmentation) and score it."""

from __future__ import annotations

import logging
import sys

import numpy as np
from torch.utils.data import Subset, default_collate

from dunet import DunetError
from dunet.data.sample import BadItem, Source, normalisers
from dunet.data.spec import DatasetSpec
from dunet.metrics import HEADLINES, evaluate, nme

log = logging.getLogger("dunet.eval")


def _split_bad(items: list) -> tuple[dict | None, list[BadItem]]:
    """collate_fn: the batch of the good samples (None if there is none) and the bad ones."""
    good = [item for item in items if not isinstance(item, BadItem)]
    return (default_collate(good) if good else None), [item for item in items if isinstance(item, BadItem)]


def predict_source(predict_crops, source: Source, input_size: int, *, indices=None, batch_size: int = 16,
                   workers: int = 0, flip: bool = False, progress: bool = False,
                   skip_bad: bool = False, with_scores: bool = False) -> tuple[np.ndarray, ...]:
    """Run `predict_crops(images, crop_to_image, flip) -> (coords, scores)` over `source` (or its `indices`)
    and return (N, K, 2) landmarks in original-image pixels and (N,) sample indices, in order; with
    `with_scores` also the (N, K) landmark scores.

    A sample whose image cannot be read is never replaced by another (it would be scored twice): it is a
    DunetError naming the file, or with `skip_bad` it is left out (logged; the returned indices lack it)."""
    from dunet.data.dataset import LandmarkDataset, SignalSafeLoader

    dataset = LandmarkDataset(source, input_size=input_size, augment=False, bad_sample="skip")
    if indices is not None:
        dataset = Subset(dataset, list(indices))
    loader = SignalSafeLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_split_bad)
    from dunet.engine.progress import progress as report

    batches = report(loader, total_images=len(dataset), desc="eval", enabled=progress,
                     log=lambda line: print(line, file=sys.stderr))
    coords, scores, order, bad = [], [], [], []
    for batch, bad_items in batches:
        if bad_items and not skip_bad:
            raise DunetError(f"{bad_items[0]}; fix it, or pass --skip-bad (data.skip_bad) to leave bad samples out")
        bad += bad_items
        if batch is not None:
            pred, peak = predict_crops(batch["image"], batch["crop_to_image"], flip)
            coords.append(np.asarray(pred))
            scores.append(np.asarray(peak))
            order.append(batch["index"].numpy())
    if bad:
        log.warning("left out %d bad sample(s) of %s, the first: %s", len(bad), source.name, bad[0])
    if not coords:
        raise DunetError(f"{source.name}: all {len(bad)} samples are bad, the first: {bad[0]}" if bad
                         else f"{source.name}: no samples to evaluate")
    if with_scores:
        return np.concatenate(coords), np.concatenate(order), np.concatenate(scores)
    return np.concatenate(coords), np.concatenate(order)


def ground_truth(source: Source, indices: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """(N, K, 2) labelled points, (N, K) labelled mask and (N,) normalisers of samples `indices`, by `spec`."""
    samples = [source.samples[i] for i in indices]
    gt = np.stack([s.keypoints for s in samples]).astype(np.float64)
    visible = np.stack([s.visible for s in samples]) > 0
    return gt, visible, normalisers(spec, samples)


def score(source: Source, pred: np.ndarray, indices: np.ndarray, spec: DatasetSpec | None = None) -> dict:
    """The data set's metrics for predictions `pred` of samples `indices` (see dunet.metrics.evaluate), scored
    as `spec` says: by default the data's own, else the model's (a custom set trained with data.normaliser)."""
    spec = spec or source.spec
    gt, visible, norm = ground_truth(source, indices, spec)
    return evaluate(pred, gt, visible, spec, norm)


def confidence_report(source: Source, pred: np.ndarray, scores: np.ndarray, indices: np.ndarray,
                      spec: DatasetSpec | None = None) -> dict:
    """How well the landmark scores separate good points from bad ones: the ROC AUC of the score as a detector
    of "error within the headline metric's threshold" (0.2 x the normaliser for PCK@0.2, 0.5 for PCKh, 0.08 of
    the inter-ocular distance for faces), over all labelled points; 1 = perfect, 0.5 = chance."""
    from dunet.metrics import confidence_auc

    spec = spec or source.spec
    gt, visible, norm = ground_truth(source, indices, spec)
    threshold = HEADLINES[spec.normaliser[0]][1]
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.linalg.norm(pred - gt, axis=-1) / norm[:, None]
    errors[~visible] = np.nan
    return {"score_auc": confidence_auc(scores, errors, threshold), "score_auc_threshold": threshold}


def main_metric(metrics: dict) -> tuple[str, bool]:
    """(key, higher_is_better) of the headline metric of a metrics dict."""
    for key, higher in (("nme_io", False), ("nme_box", False), ("pckh_0.5", True), ("pck_0.2", True)):
        if metrics.get(key) is not None:
            return key, higher
    return "mean_error_px", False


def errors_per_sample(source: Source, pred: np.ndarray, indices: np.ndarray,
                      spec: DatasetSpec | None = None) -> np.ndarray:
    """Per-sample NME by the headline metric's normaliser (the spec's), for CED plots."""
    gt, visible, norm = ground_truth(source, indices, spec or source.spec)
    return nme(pred, gt, visible, norm)
