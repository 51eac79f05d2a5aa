"""All of Table 1's numbers from CAMs, image scores and ground truth, whichever backend made the CAMs.

Training-time validation (PyTorch), `eval-cam` on a checkpoint, and `eval-cam` on an ONNX model or a
TensorRT engine all end here, so a figure means the same thing wherever it was measured.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .confidence import CONFIDENCE_FORMS, BoxPolicy, ClassifierHead, peak_calibration
from .metrics import box_iou, classification_ap, extent_ap, max_box_acc_rf, max_box_acc_v2, pinpoint_ap
from .postprocess import PROJECTIONS, BoxSettings, Detection, LocalizerParams, localize_batch, localizer_over_ratios
from .scores import pin_points
from .errors import DataError

__all__ = ["Predictions", "evaluate", "tune_ratio", "tune_box_settings", "DEFAULT_RATIOS", "RELATIVE_FLOORS",
           "MIN_OBJECTS_TO_TUNE", "SEPARATE_RATIO_REACH", "RatioTuningError"]

# r from -0.9 (a field or box almost doubled) to 0.95 (shrunk to a twentieth).
DEFAULT_RATIOS = tuple(float(r) for r in np.round(np.arange(-0.9, 0.951, 0.05), 2))
# Relative floors tried with every projection (docs/results.md, "Boxes from deep backbones").
RELATIVE_FLOORS = (0.0, 0.25, 0.5, 0.75, 0.9)
# Where heights may take their own r: up to this far from the shared r, on DEFAULT_RATIOS' grid.
SEPARATE_RATIO_REACH = 0.3
# Extent AP on fewer objects moves in steps of 10 % or more: too coarse to rank 28 values of r, and a
# split without any object ranks none at all (every AP is undefined and r would fall back to 0).
MIN_OBJECTS_TO_TUNE = 10


class RatioTuningError(DataError):
    """r cannot be chosen meaningfully on this split; the model's stored r must stay as it is."""


@dataclass
class Predictions:
    cams: np.ndarray  # (B, C, N, M)
    scores: np.ndarray  # (B, C) P(present)
    labels: np.ndarray  # (B, C) ground-truth multi-hot
    boxes: list  # per image (K, 5) ground truth, evaluation only


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def evaluate(
    predictions: Predictions, params: LocalizerParams, *, tolerance: float = 0.0, method: str = "fast",
    with_maxboxacc: bool = False, head: ClassifierHead | None = None, policy: BoxPolicy = BoxPolicy(),
) -> dict:
    """Classification, pin-pointing and extent AP (mean over classes, and per class) as fractions,
    and the box census (wrong-class boxes, boxes per image, missed objects).

    With the model's `head`, boxes get their confidence and are ranked and kept as `policy` says;
    without it (or with policy.scoring "peak"), they are ranked by their CAM peak, as in the paper."""
    num_classes = predictions.scores.shape[1]
    detections = localize_batch(predictions.cams, params, method)
    if head is not None:
        detections = [policy.apply(d, cam, head, params) for d, cam in zip(detections, predictions.cams)]
    ranked = [policy.ranking(d) for d in detections] if head is not None else detections
    points = pin_points(predictions.cams, params.affine)
    result = {
        "images": int(len(predictions.scores)),
        "classification_ap": classification_ap(predictions.scores, predictions.labels),
        "pinpoint_ap": pinpoint_ap(predictions.scores, points, predictions.boxes, tolerance),
        "extent_ap": extent_ap(ranked, predictions.boxes, num_classes),
        "extent_ap_11pt": extent_ap(ranked, predictions.boxes, num_classes, interpolation="11"),
    }
    summary = {f"{k}_mean": _mean(v) for k, v in result.items() if k != "images"}
    result = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}
    result.update(summary)
    result["ratio"] = float(params.ratio)
    result["ratio_y"] = None if params.ratio_y is None else float(params.ratio_y)
    result["scoring"] = policy.scoring if head is not None else "peak"
    result.update(box_census(detections, predictions.boxes))
    if with_maxboxacc:
        # MaxBoxAccV2 is wsolevaluation's, to the number; MaxBoxAccRF is our receptive-field-aligned variant.
        result.update(max_box_acc_v2(list(predictions.cams), predictions.boxes, params.input_size))
        result.update(max_box_acc_rf(list(predictions.cams), predictions.boxes, params.input_size, params.chain))
    result["_detections"] = detections
    return result


def box_census(detections: list[list[Detection]], truth: list) -> dict:
    """What the boxes are, counted: per image the boxes and, over all boxes, the share whose best
    overlapping object is of another class (`wrong_class_rate`) or that overlap no object at all
    (`background_rate`); `absent_class_rate`: boxes of a class the image has no object of (what class
    gating should remove); `missed_rate`: objects no box of their class covers at IoU >= 0.5."""
    boxes = wrong = background = absent = objects = missed = 0
    for found, gt in zip(detections, truth):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 5)
        objects += len(gt)
        boxes += len(found)
        present = set(gt[:, 0].astype(int).tolist())
        absent += sum(d.class_index not in present for d in found)
        if not found:
            missed += len(gt)
            continue
        iou = box_iou(np.array([d.box for d in found]), gt[:, 1:]) if len(gt) else np.zeros((len(found), 0))
        for k, det in enumerate(found):
            if iou.shape[1] == 0 or iou[k].max() <= 0:
                background += 1
            elif int(gt[iou[k].argmax(), 0]) != det.class_index:
                wrong += 1
        classes = np.array([d.class_index for d in found])
        for j, obj in enumerate(gt):
            own = classes == int(obj[0])
            if not own.any() or iou[own, j].max() < 0.5:
                missed += 1
    images = max(1, len(detections))
    return {"detections_per_image": boxes / images, "boxes": boxes, "objects": objects,
            "wrong_class_rate": wrong / boxes if boxes else 0.0, "background_rate": background / boxes if boxes else 0.0,
            "absent_class_rate": absent / boxes if boxes else 0.0,
            "missed_rate": missed / objects if objects else 0.0}


def _object_count(predictions: Predictions) -> int:
    return sum(len(np.asarray(b).reshape(-1, 5)) for b in predictions.boxes)


def tune_box_settings(
    predictions: Predictions, params: LocalizerParams, *, projections: Sequence[str] = PROJECTIONS,
    relative_floors: Sequence[float] = RELATIVE_FLOORS, ratios: Sequence[float] = DEFAULT_RATIOS,
    separate_heights: bool = True, head: ClassifierHead | None = None,
    confidence_forms: Sequence[str] = CONFIDENCE_FORMS,
) -> tuple[BoxSettings, list[tuple[str, float, float, float | None, float]]]:
    """The projection, relative floor and r with the best mean extent AP on these (validation)
    predictions, and every (projection, floor, r, r for heights or None, AP) tried. Ties go to the
    paper's settings: the first projection and floor listed, then the r closest to 0.

    With `separate_heights`, widths and heights may then take r of their own, near the one chosen
    (`_separate_ratios`): a receptive field is square, most objects are not.

    With the model's `head`, boxes are ranked by their confidence while tuning, as they will be
    ranked when used (`_ranked`); without it, by their peak, as the paper tunes. With a head, the
    confidence's form is chosen too, among `confidence_forms` (`_choose_confidence_form`).

    Raises RatioTuningError, choosing nothing, as tune_ratio does: too few objects, or nothing
    localized by any combination."""
    head = None if head is None else head.instance_form()  # the form is chosen after the boxes
    objects = _object_count(predictions)
    if objects < MIN_OBJECTS_TO_TUNE:
        tune_ratio(predictions, params, ratios, head=head)  # raises, saying why
    best, tried = None, []
    for projection in projections:
        for floor in relative_floors:
            candidate = replace(params, projection=projection, relative_floor=float(floor))
            curve = _ratio_curve(predictions, candidate, ratios, head)
            tried += [(projection, float(floor), ratio, None, ap) for ratio, ap in curve]
            ratio, ap = _best_ratio(curve)
            if best is None or ap > best[0]:  # strictly: a tie keeps the earlier projection and floor
                best = (ap, BoxSettings(projection, float(floor), ratio))
    if not best[0] > 0:
        raise RatioTuningError(f"cannot tune the boxes: no projection, relative floor and r localize any of the "
                               f"{objects} objects (extent AP 0 everywhere); the stored settings stay "
                               f"({BoxSettings.of(params).describe()})")
    settings = best[1]
    if separate_heights:
        settings = _separate_ratios(predictions, params, settings, best[0], ratios, tried, head)
    if head is not None and "peak" in confidence_forms:
        settings = _choose_confidence_form(predictions, params, settings, head, "instance" in confidence_forms,
                                           dict(projections=projections, relative_floors=relative_floors,
                                                ratios=ratios, separate_heights=separate_heights))
    return settings, tried


def _choose_confidence_form(predictions: Predictions, params: LocalizerParams, settings: BoxSettings,
                            head: ClassifierHead, instance_allowed: bool, choices: dict) -> BoxSettings:
    """`settings` (tuned with the instance form) where the instance's ranking at them gives at least
    the extent AP of the peak's ranking at the box settings tuned for the peak; else those settings
    with the peak form, calibrated on their boxes (or whenever the instance form is not allowed).

    Each ranking is compared at its own best settings, as `eval-cam --score peak --tune` would score
    the peak: compared at the instance's settings the peak was handicapped, and a letters model kept
    the instance form at 59.1 on validation while the peak's own settings gave 59.4 (and 56.8 against
    56.2 on test). A model that takes the peak form scores exactly the peak's extent AP, its form
    ranking each class as the peak does.

    Why two forms: on deep backbones the instance's pooled score grows with a mountain that has
    spread, whose box is too large, and the raw peak ranked boxes better on every model measured; on
    LeNet the instance form is mostly as good or better, and on GAP far better (docs/results.md). The
    models choose. GMP's instance confidence is a function of its peak already: nothing to choose."""
    if head.pooling == "gmp":
        return settings
    try:
        by_peak_settings, _ = tune_box_settings(predictions, params, head=None, **choices)  # the peak's ranking
    except RatioTuningError:
        return settings
    applied = by_peak_settings.applied(params)
    detections = localize_batch(predictions.cams, applied)
    calibration = peak_calibration(detections, predictions.cams, head, applied)
    if calibration is None:  # no boxes to fit the peak form's line on, or one that does not rise
        return settings
    if instance_allowed:
        classes = predictions.scores.shape[1]
        at = settings.applied(params)
        by_instance = _mean(extent_ap(_ranked(localize_batch(predictions.cams, at), predictions.cams, head, at),
                                      predictions.boxes, classes))
        by_peak = _mean(extent_ap(detections, predictions.boxes, classes))
        if not np.nan_to_num(by_peak, nan=-1.0) > np.nan_to_num(by_instance, nan=-1.0):
            return settings
    return replace(by_peak_settings, **calibration.settings_fields())


def _separate_ratios(predictions: Predictions, params: LocalizerParams, settings: BoxSettings, shared_ap: float,
                     ratios: Sequence[float], tried: list, head: ClassifierHead | None = None) -> BoxSettings:
    """Every (r for widths, r for heights) within SEPARATE_RATIO_REACH of the shared r; the pair with
    the best extent AP where it beats the shared r, else the shared r (the paper's); each pair is
    appended to `tried`. Tried after the shared r, not with it: the whole grid squared would cost 37
    times as much.

    Why: Algorithm 1 projects a CAM pixel onto a square field, and r shrinks it the same on both
    axes, so every box comes out about as tall as wide. MNIST's 3s are taller than wide (their ink
    box about 14 x 20 px); on table1's checkpoints heights' own r raised extent AP against the ink
    box by 2.2 points for SPAM and 1.2 for GMP (docs/results.md)."""
    near = [r for r in ratios if abs(r - settings.ratio) <= SEPARATE_RATIO_REACH + 1e-9]
    best_ap, best = shared_ap, settings
    applied = settings.applied(params)
    boxes_at = localizer_over_ratios(predictions.cams, applied)
    for ratio_x in near:
        for ratio_y in near:
            if ratio_x == ratio_y:
                continue  # the shared r: its row of the grid was measured already
            boxes = _ranked(boxes_at(float(ratio_x), float(ratio_y)), predictions.cams, head, applied)
            ap = float(np.nan_to_num(_mean(extent_ap(boxes, predictions.boxes, predictions.scores.shape[1])), nan=-1.0))
            tried.append((settings.projection, settings.relative_floor, float(ratio_x), float(ratio_y), ap))
            if ap > best_ap:  # strictly: a tie keeps the shared r
                best_ap, best = ap, replace(settings, ratio=float(ratio_x) + 0.0, ratio_y=float(ratio_y) + 0.0)
    return best


def _ranked(detections: list[list[Detection]], cams: np.ndarray, head: ClassifierHead | None,
            params: LocalizerParams) -> list[list[Detection]]:
    """The detections as extent AP should rank them while tuning: by confidence with a `head` (every
    box kept, as eval-cam scores), else by peak. Why: settings chosen for the peak's ranking and then
    ranked by confidence favour the peak; each ranking is tuned for itself."""
    if head is None:
        return detections
    policy = BoxPolicy()
    return [policy.ranking(policy.apply(found, cam, head, params)) for found, cam in zip(detections, cams)]


def _ratio_curve(predictions: Predictions, params: LocalizerParams, ratios: Sequence[float],
                 head: ClassifierHead | None = None) -> list[tuple[float, float]]:
    """(r, mean extent AP) for every r, boxes ranked by confidence with a `head`, else by their peak as
    the paper tunes."""
    curve = []
    boxes_at = localizer_over_ratios(predictions.cams, params)
    for ratio in ratios:
        boxes = _ranked(boxes_at(float(ratio), None), predictions.cams, head, params)
        curve.append((float(ratio), _mean(extent_ap(boxes, predictions.boxes, predictions.scores.shape[1]))))
    return curve


def _best_ratio(curve: list[tuple[float, float]]) -> tuple[float, float]:
    """(r, AP) with the best AP (NaN counts as none), ties to the r closest to 0."""
    ratio, ap = max(curve, key=lambda item: (np.nan_to_num(item[1], nan=-1.0), -abs(item[0])))
    return ratio + 0.0, float(np.nan_to_num(ap, nan=-1.0))


def tune_ratio(
    predictions: Predictions, params: LocalizerParams, ratios: Sequence[float] = DEFAULT_RATIOS, *,
    head: ClassifierHead | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """The r with the best mean extent AP on these (validation) predictions, and the whole curve.
    Ties go to the r closest to 0 (the unmodified receptive field). Boxes are ranked by confidence
    with the model's `head`, else by peak (as tune_box_settings).

    Raises RatioTuningError, and chooses nothing, when the split holds fewer than MIN_OBJECTS_TO_TUNE
    ground-truth objects or when no r localizes a single one: storing a value chosen there would
    silently ruin a working model (docs/method.md, "Inference")."""
    objects = _object_count(predictions)
    if objects < MIN_OBJECTS_TO_TUNE:
        raise RatioTuningError(
            f"cannot tune r: the split has {objects} ground-truth object(s), fewer than the {MIN_OBJECTS_TO_TUNE} "
            f"needed for the choice to mean anything; r stays {params.ratio:g}. Tune on a split with more "
            "objects (a larger --limit, or another split), or set it with --ratio")
    curve = _ratio_curve(predictions, params, ratios, head)
    best = _best_ratio(curve)
    if not best[1] > 0:
        raise RatioTuningError(f"cannot tune r: no r in {ratios[0]:g}..{ratios[-1]:g} localizes any of the {objects} "
                               f"objects (extent AP 0 everywhere); r stays {params.ratio:g}")
    return best[0] + 0.0, curve  # + 0.0: -0.0 becomes 0.0
