"""Pictures of what the localizer did: CAM heat map, back-projected area, boxes (like paper Fig. 10).

Shared by `eval-cam --save-vis` and the camera app's overlay, so both draw the same thing.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .metrics import box_iou

__all__ = ["to_bgr_uint8", "draw_heatmap", "draw_area", "draw_detections", "GREEN", "RED", "WHITE"]

GREEN, RED, WHITE, YELLOW = (0, 200, 0), (0, 0, 230), (255, 255, 255), (0, 220, 255)


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W[, C]) float [0, 1] / uint8, grey or RGB network input -> BGR uint8 for drawing."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] not in (1, 3):
        image = image.transpose(1, 2, 0)
        if image.shape[2] == 3:
            image = image[:, :, ::-1]  # network input is RGB
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image)


def draw_heatmap(canvas: np.ndarray, cam: np.ndarray, alpha: float = 0.45, region: Sequence[float] | None = None) -> np.ndarray:
    """Blend a JET-coloured map (min-max normalised) over the canvas (or over region x0, y0, x1, y1).
    Pass a CAM already laid onto the network input (runtime.metrics.cam_to_input) so that heat sits
    where the receptive fields are."""
    x0, y0, x1, y1 = (0, 0, canvas.shape[1], canvas.shape[0]) if region is None else (int(round(v)) for v in region)
    low, high = float(cam.min()), float(cam.max())
    normalised = (cam - low) / (high - low) if high > low else np.zeros_like(cam)
    heat = cv2.applyColorMap((normalised * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(heat, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_LINEAR)
    target = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = cv2.addWeighted(target, 1 - alpha, heat[: target.shape[0], : target.shape[1]], alpha, 0)
    return canvas


def draw_area(canvas: np.ndarray, area: np.ndarray, colour=YELLOW, alpha: float = 0.35) -> np.ndarray:
    """Tint the back-projected area (H, W bool, same size as canvas)."""
    if area.any():
        tint = canvas.copy()
        tint[area] = colour
        canvas[:] = cv2.addWeighted(canvas, 1 - alpha, tint, alpha, 0)
    return canvas


def draw_detections(canvas: np.ndarray, detections, classes: Sequence[str], gt_boxes: np.ndarray | None = None,
                    iou_threshold: float = 0.5, thickness: int = 1) -> np.ndarray:
    """Boxes with class and score; with ground truth: green = matches a box of its class, red = not."""
    gt = np.zeros((0, 5)) if gt_boxes is None else np.asarray(gt_boxes).reshape(-1, 5)
    for det in detections:
        colour = YELLOW
        if gt_boxes is not None:
            own = gt[gt[:, 0] == det.class_index, 1:]
            colour = GREEN if len(own) and box_iou(np.asarray(det.box)[None], own).max() >= iou_threshold else RED
        x0, y0, x1, y1 = (int(round(v)) for v in det.box)
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness)
        label = f"{classes[det.class_index]}: {det.score:.1f}"
        cv2.putText(canvas, label, (x0 + 1, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return canvas
