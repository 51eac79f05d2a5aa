"""Localization metrics in numpy (PAPER-NOTES "Metrics"): classification AP, pin-pointing AP, extent
AP (VOC, 11-point and all-point) and MaxBoxAccV2.

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
    "max_box_acc_v2",
    "cam_to_input",
]


def precision_recall(scores: Sequence[float], hits: Sequence[bool], positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall down a list ranked by score (ties keep input order: stable sort)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(hits, dtype=bool)[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
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
    """
    out = []
    for c in range(num_classes):
        records, positives = [], 0
        matched = []
        for i, boxes in enumerate(gt_boxes):
            own = np.asarray(boxes).reshape(-1, 5)
            own = own[own[:, 0] == c, 1:]
            positives += len(own)
            matched.append(np.zeros(len(own), dtype=bool))
            for det in detections[i]:
                if det.class_index == c:
                    records.append((det.score, i, det.box))
        if positives == 0:
            out.append(np.nan)
            continue
        records.sort(key=lambda r: -r[0])
        hits = []
        for score, i, box in records:
            own = np.asarray(gt_boxes[i]).reshape(-1, 5)
            own = own[own[:, 0] == c, 1:]
            if len(own) == 0:
                hits.append(False)
                continue
            ious = box_iou(np.asarray(box)[None], own)[0]
            best = int(np.argmax(ious))
            if ious[best] >= iou_threshold and not matched[i][best]:
                matched[i][best] = True
                hits.append(True)
            else:
                hits.append(False)
        out.append(average_precision(*precision_recall([r[0] for r in records], hits, positives), interpolation))
    return np.array(out)


def cam_to_input(cam: np.ndarray, chain, input_size: tuple[int, int]) -> np.ndarray:
    """(N, M) CAM -> (H, W) by bilinear interpolation, CAM pixels placed at their receptive-field
    centres (chain given) or stretched over the image (chain None, Choe et al.'s choice)."""
    height, width = input_size
    if chain is None:
        return cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    from .geometry import chain_affine

    stride, low, high = chain_affine(chain)
    centre = (low + high) / 2.0
    to_cam = np.array([[1.0 / stride, 0, -centre / stride], [0, 1.0 / stride, -centre / stride]])
    return cv2.warpAffine(cam, to_cam, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def max_box_acc_v2(
    cams: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], input_size: tuple[int, int],
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7), cam_thresholds: np.ndarray | None = None,
    chain=None,
) -> dict[str, float]:
    """Choe et al. (CVPR 2020): CAM resized to the input and min-max normalised; for each CAM
    threshold, every external contour's box; an image is correct at IoU d when one of those boxes
    reaches d with one of its ground-truth boxes. MaxBoxAcc(d) is the best accuracy over thresholds;
    MaxBoxAccV2 their mean over d. Evaluated on (image, class) pairs where the class is present.

    cams[i]: that image's (C, N, M) CAMs. With `chain`, the CAM is laid onto the input through the
    receptive-field geometry (each CAM pixel at its field's centre) instead of being stretched to the
    image: a network without padding (LeNet) has CAM pixels that do not tile the image, and
    stretching would shift every box.
    """
    cam_thresholds = np.arange(0.0, 1.0, 0.01) if cam_thresholds is None else np.asarray(cam_thresholds)
    height, width = input_size
    correct = np.zeros((len(iou_thresholds), len(cam_thresholds)))
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
                best = box_iou(found, own).max()
                correct[:, t_index] += best >= np.asarray(iou_thresholds)
    if pairs == 0:
        return {"MaxBoxAccV2": float("nan")}
    best = (correct / pairs).max(axis=1)
    result = {f"MaxBoxAcc@{d:g}": float(v) for d, v in zip(iou_thresholds, best)}
    result["MaxBoxAccV2"] = float(best.mean())
    return result
