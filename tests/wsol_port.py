"""An independent, deliberately literal re-implementation of clovaai/wsolevaluation's box evaluation
(inference.py `normalize_scoremap`, evaluation.py `compute_bboxes_from_scoremaps`,
`calculate_multiple_iou` and `BoxEvaluator.accumulate/compute` with multi_contour_eval and
multi_iou_eval), written from its code path by path, one threshold at a time, without the shortcuts
runtime.metrics takes. Tests hold runtime.metrics.max_box_acc_v2 to it."""
from __future__ import annotations

import cv2
import numpy as np


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    cam = cam.copy()
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def boxes_at_threshold(scoremap: np.ndarray, threshold: float) -> np.ndarray:
    height, width = scoremap.shape
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(src=scoremap_image, thresh=int(threshold * np.max(scoremap_image)), maxval=255,
                              type=cv2.THRESH_BINARY)
    contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.asarray([[0, 0, 0, 0]])
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.asarray(boxes)


def multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    ious = np.zeros((len(box_a), len(box_b)))
    for i, a in enumerate(box_a):
        for j, b in enumerate(box_b):
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
            area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            denominator = area_a + area_b - inter
            ious[i, j] = 0 if denominator <= 0 else inter / denominator
    return ious


def max_box_acc_v2_percent(cams: list[np.ndarray], boxes: list[np.ndarray], image_size: tuple[int, int],
                           iou_thresholds=(30, 50, 70), cam_curve_interval: float = 0.001) -> float:
    """cams[i]: one (N, M) CAM per image; boxes[i]: (K, 4) x0, y0, x1, y1; image_size (H, W).
    Returns MaxBoxAccV2 in percent, as wsolevaluation prints it."""
    thresholds = list(np.arange(0, 1, cam_curve_interval))
    correct = {d: np.zeros(len(thresholds)) for d in iou_thresholds}
    for cam, truth in zip(cams, boxes):
        resized = cv2.resize(cam.astype(np.float32), (image_size[1], image_size[0]), interpolation=cv2.INTER_CUBIC)
        scoremap = normalize_scoremap(resized)
        truth = np.array([[int(float(v)) for v in box] for box in truth])
        best = [multiple_iou(boxes_at_threshold(scoremap, t), truth).max() for t in thresholds]
        for d in iou_thresholds:
            correct[d][np.where(np.asarray(best) >= d / 100)[0]] += 1
    return float(np.average([(correct[d] * 100.0 / len(cams)).max() for d in iou_thresholds]))
