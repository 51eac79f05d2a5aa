"""Box confidence in [0, 1] from the model's own output layer, and gating by it (docs/method.md).

The paper scores a box by its highest CAM peak: an unbounded activation, not comparable across
classes or models, and one that can clear t_c on images the classifier itself calls negative. Here a
box's confidence is P(present) *of its instance*: the model's pooling and output affine applied to the
class map with every other activated cell of that class set to the flood floor — "what the classifier
would say if this object were alone in the image".

- With one object in the image it equals the image-level P(present), and it never exceeds it (an
  instance pools at most what the whole map pools), so boxes of a class the model calls absent get a
  confidence below 0.5, and `min_confidence=0.5` is class gating.
- GMP models give sigma(a_c * peak + b_c): the paper's "peak > t_c" rule is exactly confidence > 0.5.
- Every pooling is non-decreasing in each CAM value, so the confidence is monotone in the instance's
  own evidence and blind to the other instances' (two birds each get their own number).

The *peak form* (`ClassifierHead.peak_scales`, `peak_offsets`), chosen per model on validation
where it localizes better (runtime/evaluation.py, `_choose_confidence_form`):
sigma(a_c * (kappa_c * peak + beta_c) + b_c), the P(present) the output layer gives a typical instance
of class c with this peak: kappa_c and beta_c are the least-squares line of an instance's pooled score
against its peak over the class's validation boxes. A line, not a ratio: where the CAM's background is
negative (SPAM or GAP averaging it in) a weak instance pools below zero, and a ratio through the origin
fitted nothing (one letters model: pooled = 0.38 peak - 1.65, correlation 0.99). Models stored with
scales only read with beta_c = 0. Why the form: on deep backbones the instance's pooled score grows
with a mountain that has spread, whose box is too large, and the raw peak ranked their boxes better
(docs/results.md); a score monotone in the peak ranks each class's boxes exactly as the peak does and
stays in [0, 1], comparable across classes, gated at 0.5 like the instance form. The peak form can
exceed the image-level P(present) (a high peak on a class the model calls absent), so `gate` also
asks the box's class's image-level P(present) to reach the threshold: in either form, no box for a
class the model calls absent.

Boxes are ranked by the confidence's logit (`Detection.confidence_logit`), not by the confidence:
a strong instance's confidence is 1.0 exactly in float64 (logit above ~37), and ties among such boxes
would be broken by their order in the image list rather than by their evidence.

`suppress_overlaps` resolves one object claimed by several classes: of boxes of different classes
that overlap by IoU >= `iou`, only the most confident is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .errors import ConfigError
from .geometry import projected_centres
from .metrics import box_iou
from .postprocess import BoxSettings, Detection, LocalizerParams
from .scores import class_probabilities, pool_cams

__all__ = ["DEFAULT_MIN_CONFIDENCE", "DEFAULT_OVERLAP_IOU", "BoxPolicy", "ClassifierHead", "instance_confidences",
           "instance_pooled", "confidence_logits", "confidence_rank", "peak_calibration", "PeakCalibration",
           "with_confidence", "gate", "suppress_overlaps", "SCORINGS",
           "CONFIDENCE_FORMS"]

SCORINGS = ("confidence", "peak")  # what boxes are ranked by: ours, or the paper's raw CAM peak
# Deployed defaults (Localizer, edge_app): the output layer's own decision boundary, which for GMP is
# exactly the paper's "peak above t_c"; and one class per object.
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_OVERLAP_IOU = 0.5
# How a box's confidence is computed: from its instance's pooled cells, or from its peak (module docstring).
CONFIDENCE_FORMS = ("instance", "peak")


@dataclass(frozen=True)
class ClassifierHead:
    """The part of the training graph a CAM-only model drops: pooling + per-class affine + softmax."""

    pooling: str
    kernels: tuple
    slopes: np.ndarray  # (C,) a_c
    intercepts: np.ndarray  # (C,) b_c
    peak_scales: np.ndarray | None = field(default=None)  # (C,) kappa_c: the peak form; None: the instance form
    peak_offsets: np.ndarray | None = field(default=None)  # (C,) beta_c of the peak form; None: zeros

    @property
    def form(self) -> str:
        return "instance" if self.peak_scales is None else "peak"

    def probabilities(self, cams: np.ndarray) -> np.ndarray:
        """(..., C, N, M) -> (..., C) P(present), the image-level output (whatever the box form)."""
        pooled = pool_cams(cams, self.pooling, self.kernels)
        return class_probabilities(pooled, self.slopes, self.intercepts)

    def for_settings(self, settings: BoxSettings) -> "ClassifierHead":
        """This head with the confidence form `settings` carry (tuned box settings choose it)."""
        scales, offsets = settings.confidence_peak_scales, settings.confidence_peak_offsets
        if scales is None:
            return self.instance_form()
        return replace(self, peak_scales=np.asarray(scales, dtype=np.float64),
                       peak_offsets=None if offsets is None else np.asarray(offsets, dtype=np.float64))

    def with_peak_form(self, calibration: "PeakCalibration") -> "ClassifierHead":
        return replace(self, peak_scales=calibration.scales, peak_offsets=calibration.offsets)

    def instance_form(self) -> "ClassifierHead":
        return replace(self, peak_scales=None, peak_offsets=None)

    def peak_pooled(self, detections: Sequence[Detection]) -> np.ndarray:
        """(K,) the peak form's stand-in for each detection's pooled score: kappa_c * peak + beta_c."""
        classes = np.array([d.class_index for d in detections], dtype=np.int64)
        peaks = np.array([d.score for d in detections], dtype=np.float64)
        offsets = 0.0 if self.peak_offsets is None else self.peak_offsets[classes]
        return self.peak_scales[classes] * peaks + offsets


@dataclass(frozen=True)
class PeakCalibration:
    """The peak form's per-class line, pooled score = scales * peak + offsets (module docstring)."""

    scales: np.ndarray  # (C,) kappa_c > 0
    offsets: np.ndarray  # (C,) beta_c

    def settings_fields(self) -> dict:
        """As BoxSettings stores them."""
        return {"confidence_peak_scales": tuple(float(v) for v in self.scales),
                "confidence_peak_offsets": tuple(float(v) + 0.0 for v in self.offsets)}


def _cells_inside(box: Sequence[float], centres_x: np.ndarray, centres_y: np.ndarray) -> np.ndarray:
    """(N, M) bool: CAM cells whose projected field's centre lies inside the box."""
    x0, y0, x1, y1 = box
    inside_x = (centres_x >= x0) & (centres_x <= x1)
    inside_y = (centres_y >= y0) & (centres_y <= y1)
    return inside_y[:, None] & inside_x[None, :]


def instance_confidences(cams: np.ndarray, detections: Sequence[Detection], head: ClassifierHead,
                         params: LocalizerParams) -> np.ndarray:
    """One image's CAMs (C, N, M) and its detections (network-input coordinates) -> (K,) confidences,
    in the head's form. `params` says where each CAM cell projects (its projection) and what the
    flood floor is."""
    return _sigmoid(confidence_logits(cams, detections, head, params))


def confidence_logits(cams: np.ndarray, detections: Sequence[Detection], head: ClassifierHead,
                      params: LocalizerParams) -> np.ndarray:
    """(K,) a_c * pooled + b_c, the confidences before the sigmoid: what boxes are ranked by."""
    if not detections:
        return np.zeros(0)
    classes = np.array([d.class_index for d in detections])
    if head.peak_scales is not None:
        pooled = head.peak_pooled(detections)
    else:
        pooled = instance_pooled(cams, detections, head, params)
    return np.asarray(pooled, dtype=np.float64) * head.slopes[classes] + head.intercepts[classes]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return class_probabilities(logits, 1.0, 0.0)


def instance_pooled(cams: np.ndarray, detections: Sequence[Detection], head: ClassifierHead,
                    params: LocalizerParams) -> np.ndarray:
    """(K,) each detection's instance pooled as the model pools (before the output affine): the class
    map with every other activated cell of that class set to the flood floor."""
    cams = np.asarray(cams, dtype=np.float64)
    if not detections:
        return np.zeros(0)
    n, m = cams.shape[-2:]
    floor = params.floor
    centres_x = projected_centres(params.affine, np.arange(m))  # pixel-edge coordinates, as boxes are
    centres_y = projected_centres(params.affine, np.arange(n))
    masked = []
    for det in detections:
        cam = cams[det.class_index]
        others = (cam > floor) & ~_cells_inside(det.box, centres_x, centres_y)
        masked.append(np.where(others, floor, cam))
    return pool_cams(np.stack(masked), head.pooling, head.kernels)  # (K,)


def peak_calibration(detections: Sequence[Sequence[Detection]], cams: np.ndarray, head: ClassifierHead,
                     params: LocalizerParams) -> PeakCalibration | None:
    """The peak form's line per class: least squares of the instance's pooled score on its peak over
    these (validation) boxes; a class with fewer than two distinct peaks takes the line fitted over all
    classes. None where the form cannot be calibrated: no two boxes with distinct positive peaks, or a
    line that does not rise (the peak form must rank as the peak does)."""
    points: dict[int, list[tuple[float, float]]] = {}
    for found, cam in zip(detections, cams):
        usable = [d for d in found if d.score > 0]
        for det, pooled in zip(usable, instance_pooled(cam, usable, head, params)):
            points.setdefault(det.class_index, []).append((float(det.score), float(pooled)))
    overall = _line([p for values in points.values() for p in values])
    if overall is None:
        return None
    lines = [_line(points.get(c, [])) or overall for c in range(len(head.slopes))]
    scales, offsets = np.array([line[0] for line in lines]), np.array([line[1] for line in lines])
    if not ((scales > 0).all() and np.isfinite(scales).all() and np.isfinite(offsets).all()):
        return None
    return PeakCalibration(scales, offsets)


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line through (peak, pooled) points; None with fewer
    than two distinct peaks."""
    if len(points) < 2:
        return None
    peaks, pooled = np.array(points, dtype=np.float64).T
    if np.ptp(peaks) <= 0:
        return None
    slope, intercept = np.polyfit(peaks, pooled, 1)
    return float(slope), float(intercept)


@dataclass(frozen=True)
class BoxPolicy:
    """What becomes of Algorithm 1's boxes: how they are ranked, which are kept. One definition for
    the Localizer (deployment: gated) and eval-cam (ranked, nothing dropped unless asked)."""

    scoring: str = "confidence"  # rank by instance P(present), or "peak" (the paper's, for Table 1)
    min_confidence: float | None = None  # drop boxes below this confidence
    overlap_iou: float | None = None  # of different-class boxes overlapping this much, keep the most confident

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ConfigError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")

    def apply(self, detections: Sequence[Detection], cams: np.ndarray, head: ClassifierHead,
              params: LocalizerParams, class_probabilities: np.ndarray | None = None) -> list[Detection]:
        """`class_probabilities`: the image's (C,) P(present) where the caller has it already (the
        Localizer reports it with every frame); else computed here when gating needs it."""
        detections = with_confidence(detections, cams, head, params)
        if self.min_confidence is not None and class_probabilities is None:
            class_probabilities = head.probabilities(cams)
        return suppress_overlaps(gate(detections, self.min_confidence, class_probabilities), self.overlap_iou)

    def ranking(self, detections: Sequence[Detection]) -> list[Detection]:
        """The detections with `score` set to what they are ranked by (for AP): the peak, or the
        confidence's logit (the confidence itself ties at 1.0; module docstring)."""
        if self.scoring == "peak":
            return list(detections)
        return [replace(d, score=confidence_rank(d)) for d in detections]


def confidence_rank(detection: Detection) -> float:
    """What a box is ranked by among boxes of confidence: its logit where known, else its confidence
    (a Detection built by hand); both order boxes alike, the logit without ties at 1.0."""
    if detection.confidence_logit is not None:
        return float(detection.confidence_logit)
    return float(detection.confidence) if detection.confidence is not None else float("-inf")


def with_confidence(detections: Sequence[Detection], cams: np.ndarray, head: ClassifierHead,
                    params: LocalizerParams) -> list[Detection]:
    logits = confidence_logits(cams, detections, head, params)
    return [replace(d, confidence=float(c), confidence_logit=float(z))
            for d, c, z in zip(detections, _sigmoid(logits), logits)]


def gate(detections: Sequence[Detection], min_confidence: float | None,
         class_probabilities: np.ndarray | None = None) -> list[Detection]:
    """Keep the boxes whose confidence reaches `min_confidence` (None keeps all) and, given the image's
    (C,) P(present), whose class's reaches it too. The instance form never exceeds its class's
    P(present), so for it the second test changes nothing; the peak form can, on a class the model
    calls absent (module docstring)."""
    if min_confidence is None:
        return list(detections)
    return [d for d in detections if d.confidence is not None and d.confidence >= min_confidence
            and (class_probabilities is None or class_probabilities[d.class_index] >= min_confidence)]


def suppress_overlaps(detections: Sequence[Detection], iou: float | None = 0.5) -> list[Detection]:
    """Across classes, of boxes overlapping by IoU >= `iou`, keep only the most confident (None: keep all).
    Boxes of one class never suppress each other: Algorithm 1 already separated them."""
    if iou is None or len(detections) < 2:
        return list(detections)
    order = sorted(range(len(detections)), key=lambda i: -confidence_rank(detections[i]))
    boxes = np.array([detections[i].box for i in order], dtype=np.float64)
    overlaps = box_iou(boxes, boxes)
    kept: list[int] = []
    for rank, index in enumerate(order):
        cls = detections[index].class_index
        if all(detections[order[k]].class_index == cls or overlaps[rank, k] < iou for k in kept):
            kept.append(rank)
    return [detections[order[k]] for k in kept]
