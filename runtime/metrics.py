"""Localization metrics in numpy (docs/method.md, "Metrics"): classification AP, pin-pointing AP, extent
AP (VOC, 11-point and all-point), MaxBoxAccV2 (clovaai/wsolevaluation's, to the number) and its
receptive-field-aligned variant MaxBoxAccRF.

Boxes are (x0, y0, x1, y1) in pixel-edge coordinates (x1, y1 exclusive), the same everywhere in
spamcam, so IoU needs no "+1" corrections.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "average_precision",
    "precision_recall",
    "box_iou",
    "classification_ap",
    "pinpoint_ap",
    "extent_ap",
    "extent_ap_reference",
    "max_box_acc_v2",
    "max_box_acc_rf",
    "wsol_normalize",
    "cam_to_input",
]


def precision_recall(scores: Sequence[float], hits: Sequence[bool], positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall down a list ranked by score, one point per distinct score: items with
    equal scores enter together (as in scikit-learn's curves), so the AP cannot depend on the order in
    which tied items happened to be listed."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    hits = np.asarray(hits, dtype=bool)[order]
    ranked = scores[order]
    group_ends = np.r_[ranked[1:] != ranked[:-1], True] if len(ranked) else np.zeros(0, dtype=bool)
    tp = np.cumsum(hits)[group_ends]
    fp = np.cumsum(~hits)[group_ends]
    recall = tp / max(positives, 1)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return precision, recall


def average_precision(precision: np.ndarray, recall: np.ndarray, interpolation: str = "all") -> float:
    """VOC AP. "all": area under the monotone precision envelope (VOC2010+); "11": mean of the
    envelope at recall 0, 0.1, ..., 1 (VOC2007)."""
    if len(precision) == 0:
        return 0.0
    if interpolation == "11":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    if interpolation != "all":
        raise ValueError(f"interpolation must be 'all' or '11', got {interpolation!r}")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, 4) x (L, 4) -> (K, L) intersection over union."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def classification_ap(scores: np.ndarray, labels: np.ndarray, interpolation: str = "all") -> np.ndarray:
    """(B, C) scores and multi-hot labels -> AP per class (NaN for a class with no positive image)."""
    scores, labels = np.asarray(scores), np.asarray(labels).astype(bool)
    out = []
    for c in range(scores.shape[1]):
        positives = int(labels[:, c].sum())
        if positives == 0:
            out.append(np.nan)
            continue
        out.append(average_precision(*precision_recall(scores[:, c], labels[:, c], positives), interpolation))
    return np.array(out)


def pinpoint_ap(
    scores: np.ndarray, points: np.ndarray, gt_boxes: Sequence[np.ndarray], tolerance: float = 0.0,
    interpolation: str = "all",
) -> np.ndarray:
    """Oquab et al.'s pin-pointing AP per class.

    scores (B, C), points (B, C, 2) x, y; gt_boxes[i] (K, 5) class, x0, y0, x1, y1. An image that
    contains the class is a hit when its point lies within `tolerance` pixels of one of its boxes
    of that class; images without the class are false positives wherever they point.
    """
    scores, points = np.asarray(scores), np.asarray(points)
    out = []
    for c in range(scores.shape[1]):
        hits, positives = [], 0
        for i, boxes in enumerate(gt_boxes):
            own = np.asarray(boxes).reshape(-1, 5)
            own = own[own[:, 0] == c]
            positives += bool(len(own))
            x, y = points[i, c]
            hits.append(bool(len(own)) and bool(np.any(
                (x >= own[:, 1] - tolerance) & (x <= own[:, 3] + tolerance)
                & (y >= own[:, 2] - tolerance) & (y <= own[:, 4] + tolerance))))
        out.append(np.nan if positives == 0 else
                   average_precision(*precision_recall(scores[:, c], hits, positives), interpolation))
    return np.array(out)


def extent_ap(
    detections: Sequence[Sequence], gt_boxes: Sequence[np.ndarray], num_classes: int, iou_threshold: float = 0.5,
    interpolation: str = "all",
) -> np.ndarray:
    """VOC detection AP per class: all detections ranked by score, each matched greedily to the
    unmatched ground-truth box of its image with the highest IoU >= threshold; duplicates are false.

    detections[i]: that image's detections (objects with class_index, score, box).

    The greedy matching only ever looks at one image's boxes, so each image's detections are matched
    in their global rank order with one IoU matrix, rather than one IoU call per detection: the same
    hits as extent_ap_reference, in less time where r is tuned over thousands of boxes (train-cam
    does it every epoch; docs/benchmarks.md, "Tuning r")."""
    nothing = np.zeros((0, 4))
    own_by_class = [[nothing] * len(gt_boxes) for _ in range(num_classes)]  # [c][i]: image i's boxes of class c
    for i, boxes in enumerate(gt_boxes):
        truth = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        for c in np.unique(truth[:, 0]).astype(int):
            if 0 <= c < num_classes:
                own_by_class[c][i] = truth[truth[:, 0] == c, 1:]
    per_class: list[list[tuple[float, int, Sequence[float]]]] = [[] for _ in range(num_classes)]
    for i, image_detections in enumerate(detections):  # image order, then detection order: the tie order
        for det in image_detections:
            if 0 <= det.class_index < num_classes:
                per_class[det.class_index].append((det.score, i, det.box))
    out = []
    for c in range(num_classes):
        own = own_by_class[c]
        positives = sum(len(boxes) for boxes in own)
        if positives == 0:
            out.append(np.nan)
            continue
        records = sorted(per_class[c], key=lambda r: -r[0])  # stable: ties keep the order above
        scores = [r[0] for r in records]
        images = np.array([r[1] for r in records], dtype=np.int64)
        boxes = np.array([r[2] for r in records], dtype=np.float64).reshape(-1, 4)
        hits = np.zeros(len(records), dtype=bool)
        for group in _groups_by_image(images):
            truth = own[int(images[group[0]])]
            if len(truth) == 0:
                continue
            ious = box_iou(boxes[group], truth)
            matched = np.zeros(len(truth), dtype=bool)
            for row, best in enumerate(np.argmax(ious, axis=1)):
                if ious[row, best] >= iou_threshold and not matched[best]:
                    matched[best] = True
                    hits[group[row]] = True
        out.append(average_precision(*precision_recall(scores, hits.tolist(), positives), interpolation))
    return np.array(out)


def extent_ap_reference(detections: Sequence[Sequence], gt_boxes: Sequence[np.ndarray], num_classes: int,
                        iou_threshold: float = 0.5, interpolation: str = "all") -> np.ndarray:
    """extent_ap as the VOC devkit's loop is written: rank every detection of a class, then match each
    in turn to its image's boxes. Kept to check extent_ap against (tests) and to time it
    (benchmarks/tuning.py); extent_ap matches each image's detections together."""
    out = []
    for c in range(num_classes):
        records = sorted(((d.score, i, d.box) for i, found in enumerate(detections) for d in found
                          if d.class_index == c), key=lambda r: -r[0])
        own = [np.asarray(b).reshape(-1, 5) for b in gt_boxes]
        own = [b[b[:, 0] == c, 1:] for b in own]
        positives = sum(len(b) for b in own)
        if positives == 0:
            out.append(np.nan)
            continue
        matched = [np.zeros(len(b), dtype=bool) for b in own]
        hits = []
        for _, i, box in records:
            if len(own[i]) == 0:
                hits.append(False)
                continue
            ious = box_iou(np.asarray(box)[None], own[i])[0]
            best = int(np.argmax(ious))
            hits.append(bool(ious[best] >= iou_threshold and not matched[i][best]))
            matched[i][best] |= hits[-1]
        out.append(average_precision(*precision_recall([r[0] for r in records], hits, positives), interpolation))
    return np.array(out)


def _groups_by_image(images: np.ndarray) -> list[np.ndarray]:
    """Indices into a ranked list, one array per image, each still in rank order."""
    if len(images) == 0:
        return []
    by_image = np.argsort(images, kind="stable")
    ranked = images[by_image]
    return np.split(by_image, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1)


def cam_to_input(cam: np.ndarray, chain, input_size: tuple[int, int], affine: tuple | None = None) -> np.ndarray:
    """(N, M) CAM -> (H, W) by bilinear interpolation, CAM pixels placed at their receptive-field
    centres (chain given), at the centres of a projection's fields (`affine`, LocalizerParams.affine:
    pictures of what the boxes were made from) or stretched over the image (chain None, Choe et al.'s
    choice)."""
    height, width = input_size
    if chain is None and affine is None:
        return cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    from .geometry import chain_affine

    stride, low, high = affine if affine is not None else chain_affine(chain)
    centre = (low + high) / 2.0
    to_cam = np.array([[1.0 / stride, 0, -centre / stride], [0, 1.0 / stride, -centre / stride]])
    return cv2.warpAffine(cam, to_cam, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


WSOL_IOU_THRESHOLDS = (0.3, 0.5, 0.7)  # Choe et al.'s MaxBoxAccV2 deltas
WSOL_CAM_CURVE_INTERVAL = 0.001  # wsolevaluation's default threshold step (config.py --cam_curve_interval)


def wsol_normalize(cam: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """A CAM as wsolevaluation scores it: bicubic resize to the input, then min-max to [0, 1]
    (a constant or NaN map becomes all zeros, as its `normalize_scoremap` does)."""
    height, width = input_size
    resized = cv2.resize(np.asarray(cam, dtype=np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    if np.isnan(resized).any():
        return np.zeros_like(resized)
    low, high = resized.min(), resized.max()
    if low == high:
        return np.zeros_like(resized)
    resized = resized - low
    return resized / resized.max()


def _wsol_iou(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """wsolevaluation's `calculate_multiple_iou`: inclusive pixel boxes, hence the +1 in every side."""
    x0 = np.maximum(found[:, None, 0], truth[None, :, 0])
    y0 = np.maximum(found[:, None, 1], truth[None, :, 1])
    x1 = np.minimum(found[:, None, 2], truth[None, :, 2])
    y1 = np.minimum(found[:, None, 3], truth[None, :, 3])
    inter = np.maximum(0, x1 - x0 + 1) * np.maximum(0, y1 - y0 + 1)
    area_f = (found[:, 2] - found[:, 0] + 1) * (found[:, 3] - found[:, 1] + 1)
    area_t = (truth[:, 2] - truth[:, 0] + 1) * (truth[:, 3] - truth[:, 1] + 1)
    union = area_f[:, None] + area_t[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _wsol_best_iou_per_threshold(scoremap: np.ndarray, truth: np.ndarray, cam_thresholds: np.ndarray) -> np.ndarray:
    """For each CAM threshold, the best IoU of any contour box with any ground-truth box, following
    wsolevaluation's `compute_bboxes_from_scoremaps` with multi_contour_eval: the map made 8-bit, pixels
    strictly above int(t * its max), every contour (RETR_TREE), boxes x..x+w clipped to W-1 / H-1, and
    a [0, 0, 0, 0] box where nothing is left. The 8-bit map has at most 256 distinct cut-offs, so each
    is computed once and shared by the thresholds that land on it (the same result, ~4x fewer contours)."""
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    cutoffs = (cam_thresholds * float(image.max())).astype(np.int64)  # int(t * max): truncation, t >= 0
    best_by_cutoff = {}
    for cutoff in np.unique(cutoffs):
        contours, _ = cv2.findContours((image > cutoff).astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        if contours:
            rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64)
            found = np.stack([rects[:, 0], rects[:, 1], np.minimum(rects[:, 0] + rects[:, 2], width - 1),
                              np.minimum(rects[:, 1] + rects[:, 3], height - 1)], axis=1)
        else:
            found = np.zeros((1, 4), dtype=np.int64)
        best_by_cutoff[int(cutoff)] = float(_wsol_iou(found, truth).max())
    return np.array([best_by_cutoff[int(c)] for c in cutoffs])


def max_box_acc_v2(
    cams: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], input_size: tuple[int, int],
    iou_thresholds: Sequence[float] = WSOL_IOU_THRESHOLDS, cam_curve_interval: float = WSOL_CAM_CURVE_INTERVAL,
) -> dict[str, float]:
    """MaxBoxAccV2 (Choe et al., CVPR 2020) exactly as clovaai/wsolevaluation's `BoxEvaluator` computes
    it (multi-contour, multi-IoU: its `--box_v2_metric`), so that our figure can be set beside that
    literature's. Each (image, present class) pair counts once, as an image does there: its CAM is
    stretched over the input (bicubic) and min-max normalised; at each threshold of
    arange(0, 1, cam_curve_interval) the pair is correct at IoU d when a contour box reaches d with one
    of its ground-truth boxes (truncated to whole pixels, as wsolevaluation's box loader does).
    MaxBoxAcc(d) is the best accuracy over thresholds, MaxBoxAccV2 the mean over d. Fractions in
    [0, 1]; wsolevaluation prints the same numbers in percent.

    cams[i]: image i's (C, N, M) CAMs; gt_boxes[i]: its (K, 5) class, x0, y0, x1, y1 in input pixels.
    """
    cam_thresholds = np.arange(0, 1, cam_curve_interval)
    deltas = np.asarray(iou_thresholds, dtype=np.float64)
    correct = np.zeros((len(deltas), len(cam_thresholds)))
    pairs = 0
    for cam_set, boxes in zip(cams, gt_boxes):
        boxes = np.asarray(boxes).reshape(-1, 5)
        for c in np.unique(boxes[:, 0]).astype(int):
            truth = boxes[boxes[:, 0] == c, 1:].astype(np.float64).astype(np.int64)  # wsol's int(): truncation
            best = _wsol_best_iou_per_threshold(wsol_normalize(cam_set[c], input_size), truth, cam_thresholds)
            correct += best[None, :] >= deltas[:, None]
            pairs += 1
    return _max_box_acc_summary(correct, pairs, deltas, "MaxBoxAccV2", "MaxBoxAcc")


def max_box_acc_rf(
    cams: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], input_size: tuple[int, int], chain,
    iou_thresholds: Sequence[float] = WSOL_IOU_THRESHOLDS, cam_thresholds: np.ndarray | None = None,
) -> dict[str, float]:
    """spamcam's receptive-field-aligned variant of MaxBoxAccV2 ("MaxBoxAccRF"; never reported under
    the wsolevaluation name): each CAM pixel is laid at its receptive field's centre (bilinear) instead of
    stretched over the image, which matters for networks without padding (LeNet), whose CAM pixels do
    not tile the image; external contours, thresholds 0, 0.01, ..., 0.99 (>=), edge-coordinate boxes."""
    cam_thresholds = np.arange(0.0, 1.0, 0.01) if cam_thresholds is None else np.asarray(cam_thresholds)
    deltas = np.asarray(iou_thresholds, dtype=np.float64)
    correct = np.zeros((len(deltas), len(cam_thresholds)))
    pairs = 0
    for cam_set, boxes in zip(cams, gt_boxes):
        boxes = np.asarray(boxes).reshape(-1, 5)
        for c in np.unique(boxes[:, 0]).astype(int):
            own = boxes[boxes[:, 0] == c, 1:]
            resized = cam_to_input(np.asarray(cam_set[c], dtype=np.float32), chain, input_size)
            low, high = float(resized.min()), float(resized.max())
            normalised = (resized - low) / (high - low) if high > low else np.zeros_like(resized)
            pairs += 1
            for t_index, threshold in enumerate(cam_thresholds):
                mask = (normalised >= threshold).astype(np.uint8)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                if not contours:
                    continue
                found = np.array([[x, y, x + w, y + h] for x, y, w, h in map(cv2.boundingRect, contours)], dtype=np.float64)
                correct[:, t_index] += box_iou(found, own).max() >= deltas
    return _max_box_acc_summary(correct, pairs, deltas, "MaxBoxAccRF", "MaxBoxAccRF")


def _max_box_acc_summary(correct: np.ndarray, pairs: int, deltas: np.ndarray, name: str, prefix: str) -> dict[str, float]:
    if pairs == 0:
        return {name: float("nan")}
    best = (correct / pairs).max(axis=1)
    result = {f"{prefix}@{d:g}": float(v) for d, v in zip(deltas, best)}
    result[name] = float(best.mean())
    return result
