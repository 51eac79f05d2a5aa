"""Annotate a frame: boxes with class and score, optionally the CAM heat map or the back-projected
area, and a status line with FPS and per-stage times. Drawing code is shared with eval-cam's
pictures (runtime.visualize), so both look the same."""
from __future__ import annotations

import cv2
import numpy as np

from runtime.localizer import FrameResult
from runtime.metrics import cam_to_input
from runtime.postprocess import LocalizerParams, backprojected_area
from runtime.visualize import draw_area, draw_detections, draw_heatmap

__all__ = ["annotate", "render_snapshot", "OVERLAYS"]

OVERLAYS = ("boxes", "heatmap", "area")


def _frame_region(result: FrameResult, input_size) -> tuple[float, float, float, float]:
    """Where the network input lies in the frame (the whole frame, or inside the letterbox bars)."""
    height, width = input_size
    return tuple(result.transform.boxes_to_frame(np.array([[0, 0, width, height]]))[0])


def _area_in_frame(result: FrameResult, params: LocalizerParams, shape, class_index: int | None = None) -> np.ndarray:
    """The back-projected area (of one class, or of all) as a frame-sized mask."""
    areas = backprojected_area(result.cams, params)
    area = (areas[class_index] if class_index is not None else areas.any(axis=0)).astype(np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in _frame_region(result, params.input_size))
    resized = cv2.resize(area, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_NEAREST).astype(bool)
    full = np.zeros(shape[:2], dtype=bool)
    full[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized[: full.shape[0] - y0, : full.shape[1] - x0]
    return full


def _bgr_copy(frame: np.ndarray) -> np.ndarray:
    return (frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)).copy()


def _thickness(canvas: np.ndarray) -> int:
    return max(1, round(max(canvas.shape[:2]) / 400))


def annotate(frame: np.ndarray, result: FrameResult, classes, params: LocalizerParams, *, overlay: str = "boxes",
             status: str | None = None, track_ids=None) -> np.ndarray:
    canvas = _bgr_copy(frame)
    if overlay == "heatmap" and len(result.scores):
        best = int(np.argmax(result.scores))
        draw_heatmap(canvas, cam_to_input(result.cams[best], params.chain, params.input_size, params.affine),
                     region=_frame_region(result, params.input_size))
    elif overlay == "area":
        draw_area(canvas, _area_in_frame(result, params, canvas.shape))
    draw_detections(canvas, result.detections, classes, thickness=_thickness(canvas), track_ids=track_ids)
    if status:
        scale = max(0.4, canvas.shape[0] / 900)
        (w, h), _ = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(canvas, (0, 0), (w + 8, h + 10), (0, 0, 0), -1)
        cv2.putText(canvas, status, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def _own_area(area: np.ndarray, box) -> np.ndarray:
    """The parts of a class's back-projected area that touch this box: the other objects of the
    class (and look-alikes) have their own areas, which in one event's picture would read as boxes."""
    count, labels = cv2.connectedComponents(area.astype(np.uint8))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = np.unique(labels[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)])
    return np.isin(labels, inside[inside > 0]) if count > 1 else area


def render_snapshot(frame: np.ndarray, result: FrameResult, detection_index: int, classes, params: LocalizerParams,
                    track_id: int | None = None) -> np.ndarray:
    """An event's picture: the object's box over its class's CAM heat map, with the back-projected
    area outlined — why the model put the box there, which a detector's snapshot cannot show."""
    canvas = _bgr_copy(frame)
    detection = result.detections[detection_index]
    cam = cam_to_input(result.cams[detection.class_index], params.chain, params.input_size, params.affine)
    draw_heatmap(canvas, cam, region=_frame_region(result, params.input_size))
    draw_area(canvas, _own_area(_area_in_frame(result, params, canvas.shape, detection.class_index), detection.box),
              alpha=0.15, outline=True)
    draw_detections(canvas, [detection], classes, thickness=_thickness(canvas), track_ids=[track_id])
    return canvas
