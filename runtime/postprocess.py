"""CAMs -> boxes (paper §3.1.1, Fig. 4, Algorithm 1; docs/method.md "Inference").

Per class map: peaks above t_c -> flood-filled "mountains" (non-increasing paths, value > floor) ->
each mountain pixel's receptive field by fast back-projection, resized by r -> the union of those
rectangles -> external contours -> bounding boxes, scored by the highest peak inside.

Two implementations give the same boxes:
- `reference`: the paper literally. Python flood fill per peak, Algorithm 1 per pixel, rectangles
  painted into a mask at input resolution, cv2.findContours.
- `fast`: vectorised flood fill over all classes at once, Algorithm 1 folded into one affine map,
  and the rectangles painted into a *coordinate-compressed* grid: one cell per interval between
  distinct rectangle edges. A cell is entirely inside or outside every rectangle, so the compressed
  mask has the same 8-connected shapes, holes and external contours as the full-resolution one;
  its size is at most (2N x 2M) instead of (H x W). Bounding boxes map back through the edge lists.

Boxes are (x0, y0, x1, y1) in pixel-edge coordinates of the network input (x1, y1 exclusive).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .geometry import Chain, apply_ratio, chain_affine, receptive_field, validate_chain

__all__ = ["Detection", "LocalizerParams", "find_peaks", "mountains", "localize", "localize_batch", "METHODS",
           "backprojected_area"]

METHODS = ("fast", "reference")
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
_SQUARE = np.ones((3, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Detection:
    class_index: int
    score: float  # the highest CAM peak inside the box (the paper's box score)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (x1, y1 exclusive)
    confidence: float | None = None  # P(present) of this instance, in [0, 1] (runtime/confidence.py)

    def to_dict(self, classes: Sequence[str] | None = None) -> dict:
        out = {"class_index": self.class_index, "score": round(float(self.score), 6),
               "box": [round(float(v), 2) for v in self.box]}
        if self.confidence is not None:
            out["confidence"] = round(float(self.confidence), 6)
        if classes is not None:
            out["class"] = classes[self.class_index]
        return out


@dataclass
class LocalizerParams:
    """Everything post-processing needs; travels in the checkpoint, ONNX metadata and engine sidecar."""

    thresholds: Sequence[float]  # t_c per class
    chain: Chain
    input_size: tuple[int, int]  # (H, W) of the network input
    ratio: float = 0.0
    floor: float = 0.0
    enabled: np.ndarray = field(default=None)  # classes with a usable threshold (a_c > 0)

    def __post_init__(self) -> None:
        self.chain = validate_chain(self.chain)
        thresholds = [np.nan if t is None else float(t) for t in self.thresholds]
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.enabled is None:
            self.enabled = np.isfinite(self.thresholds)
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.affine = chain_affine(self.chain)  # Algorithm 1 folded: x0 = x*S + A, x1 = x*S + B


def _check_cams(cams: np.ndarray, params: LocalizerParams, ndim: int) -> np.ndarray:
    cams = np.asarray(cams)
    if cams.ndim != ndim:
        raise ValueError(f"expected CAMs with {ndim} dimensions, got shape {cams.shape}")
    if cams.shape[-3] != len(params.thresholds):
        raise ValueError(f"CAMs have {cams.shape[-3]} classes but {len(params.thresholds)} thresholds were given")
    if not np.isfinite(cams).all():
        raise ValueError("CAMs contain NaN or inf: the model or its input is broken (check the engine's precision)")
    return cams.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- fast

def find_peaks(cams: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(C, N, M) bool: 8-neighbourhood local maxima (plateaus included) strictly above t_c.
    A 3x3 dilation gives each pixel its neighbourhood maximum; outside the map counts as -inf."""
    cams = np.asarray(cams, dtype=np.float32)
    peaks = cams > np.asarray(thresholds, dtype=np.float64)[:, None, None]
    for c in np.flatnonzero(peaks.any(axis=(1, 2))):
        neighbourhood = cv2.dilate(cams[c], _SQUARE, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
        peaks[c] &= cams[c] >= neighbourhood
    return peaks


_FILL = 2  # mask value cv2.floodFill writes; 1 marks pixels at or below the floor (barriers)
_FLOOD_FLAGS = 8 | cv2.FLOODFILL_MASK_ONLY | (_FILL << 8)  # 8-connected, mask only


def mountains(cams: np.ndarray, seeds: np.ndarray, floor: float) -> np.ndarray:
    """(C, N, M) bool: pixels reachable from a seed through 8-neighbours along non-increasing values
    that stay above `floor` (the seeds themselves always included).

    cv2.floodFill in its floating-range mode admits a pixel when it is within [-loDiff, +upDiff] of
    the neighbour it is reached from; upDiff = 0 and an unbounded loDiff is exactly "not higher than
    the neighbour". Pixels already filled by an earlier seed stop a later fill, which loses nothing:
    whatever is reachable through them was reached from them."""
    reached = seeds.copy()
    height, width = cams.shape[1:]
    for c in np.flatnonzero(seeds.any(axis=(1, 2))):
        image = np.ascontiguousarray(cams[c], dtype=np.float32)
        mask = np.zeros((height + 2, width + 2), dtype=np.uint8)
        mask[1:-1, 1:-1] = image <= floor
        for y, x in zip(*np.nonzero(seeds[c])):
            if mask[y + 1, x + 1] == 0:
                cv2.floodFill(image, mask, (int(x), int(y)), 0, loDiff=1e30, upDiff=0, flags=_FLOOD_FLAGS)
        reached[c] |= mask[1:-1, 1:-1] == _FILL
    return reached


def _rounded_rects(params: LocalizerParams, rows: np.ndarray, cols: np.ndarray):
    """Back-projected, ratio-resized rectangles rounded to inclusive pixels, and which survive:
    r >= 1 can make a rectangle vanish, and a field can lie wholly outside the image."""
    height, width = params.input_size
    stride, low, high = params.affine
    x_lo, x_hi = apply_ratio(cols * stride + low, cols * stride + high, params.ratio)
    y_lo, y_hi = apply_ratio(rows * stride + low, rows * stride + high, params.ratio)
    xl, xh, yl, yh = (np.floor(np.asarray(v, dtype=np.float64) + 0.5) for v in (x_lo, x_hi, y_lo, y_hi))
    kept = (xh >= xl) & (yh >= yl) & (xh >= 0) & (xl <= width - 1) & (yh >= 0) & (yl <= height - 1)
    rects = np.stack([xl.clip(0, width - 1), yl.clip(0, height - 1), xh.clip(0, width - 1), yh.clip(0, height - 1)], 1)
    return rects.reshape(-1, 4).astype(np.int64), kept.reshape(-1)


def _rectangles(params: LocalizerParams, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(K, 4) int inclusive x0, y0, x1, y1 of the surviving rectangles."""
    rects, kept = _rounded_rects(params, rows, cols)
    return rects[kept]


def _compressed_masks(classes: np.ndarray, rects: np.ndarray, count: int):
    """Paint inclusive rectangles, each tagged with its class, into one coordinate-compressed grid
    per class: (count, gy, gx) uint8 plus the edge lists xs, ys (cell i spans [xs[i], xs[i+1])).

    The edges are shared by all classes (a finer grid is still exact for each), and painting uses a
    2-D difference array and two cumulative sums, so there is no Python loop over rectangles."""
    xs = np.unique(np.concatenate([rects[:, 0], rects[:, 2] + 1]))
    ys = np.unique(np.concatenate([rects[:, 1], rects[:, 3] + 1]))
    x0, x1 = np.searchsorted(xs, rects[:, 0]), np.searchsorted(xs, rects[:, 2] + 1)
    y0, y1 = np.searchsorted(ys, rects[:, 1]), np.searchsorted(ys, rects[:, 3] + 1)
    diff = np.zeros((count, len(ys), len(xs)), dtype=np.int32)
    np.add.at(diff, (classes, y0, x0), 1)
    np.add.at(diff, (classes, y0, x1), -1)
    np.add.at(diff, (classes, y1, x0), -1)
    np.add.at(diff, (classes, y1, x1), 1)
    covered = diff.cumsum(axis=1).cumsum(axis=2)[:, :-1, :-1] > 0
    return covered.astype(np.uint8), xs, ys


def _contour_boxes(mask: np.ndarray, xs: np.ndarray | None = None, ys: np.ndarray | None = None) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if xs is None:
            boxes.append((x, y, x + w, y + h))
        else:
            boxes.append((xs[x], ys[y], xs[x + w], ys[y + h]))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _score_boxes(boxes: np.ndarray, peak_centres: np.ndarray, peak_values: np.ndarray) -> np.ndarray:
    """Highest peak whose back-projected centre lies inside each box."""
    if len(boxes) == 0:
        return np.zeros(0)
    inside = (
        (peak_centres[None, :, 0] >= boxes[:, None, 0]) & (peak_centres[None, :, 0] <= boxes[:, None, 2])
        & (peak_centres[None, :, 1] >= boxes[:, None, 1]) & (peak_centres[None, :, 1] <= boxes[:, None, 3])
    )
    scores = np.where(inside, peak_values[None, :], -np.inf).max(axis=1, initial=-np.inf)
    return scores


def _peak_centres(rects: np.ndarray) -> np.ndarray:
    return np.stack([(rects[:, 0] + rects[:, 2] + 1) / 2.0, (rects[:, 1] + rects[:, 3] + 1) / 2.0], axis=1)


def _localize_fast(cams: np.ndarray, params: LocalizerParams) -> list[Detection]:
    thresholds = np.where(params.enabled, params.thresholds, np.inf)
    # Only classes whose maximum clears t_c can have a peak: usually a few of many.
    active = np.flatnonzero(cams.reshape(len(cams), -1).max(axis=1) > thresholds)
    if len(active) == 0:
        return []
    cams = cams[active]
    peaks = find_peaks(cams, thresholds[active])
    reach = mountains(cams, peaks, params.floor)
    k, rows, cols = np.nonzero(reach)  # every mountain pixel of every active class
    rects, kept = _rounded_rects(params, rows, cols)
    k, rects = k[kept], rects[kept]
    if len(rects) == 0:
        return []
    masks, xs, ys = _compressed_masks(k, rects, len(active))
    pk, prow, pcol = np.nonzero(peaks)
    prects, pkept = _rounded_rects(params, prow, pcol)
    pk, centres, values = pk[pkept], _peak_centres(prects[pkept]), cams[pk, prow, pcol][pkept]
    detections = []
    for index in np.unique(k):
        boxes = _contour_boxes(masks[index], xs, ys)
        own = pk == index
        scores = _score_boxes(boxes, centres[own], values[own])
        c = int(active[index])
        detections += [Detection(c, float(s), tuple(float(v) for v in b)) for b, s in zip(boxes, scores)]
    return detections


# ----------------------------------------------------------------------------------------- reference

def _reference_rect(params: LocalizerParams, row: int, col: int):
    """Algorithm 1 for one pixel, walking the layers one by one, then the ratio and clipping."""
    x0, x1 = receptive_field(params.chain, col)
    y0, y1 = receptive_field(params.chain, row)
    if params.ratio != 0:
        w, h = x1 - x0, y1 - y0
        x0, x1 = x0 + w * params.ratio / 2, x1 - w * params.ratio / 2
        y0, y1 = y0 + h * params.ratio / 2, y1 - h * params.ratio / 2
    x0, x1, y0, y1 = (int(np.floor(v + 0.5)) for v in (x0, x1, y0, y1))
    height, width = params.input_size
    if x1 < x0 or y1 < y0 or x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
        return None
    return max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)


def _localize_reference(cams: np.ndarray, params: LocalizerParams) -> list[Detection]:
    height, width = params.input_size
    detections = []
    for c, cam in enumerate(cams):
        if not params.enabled[c]:
            continue
        n, m = cam.shape
        peaks = []
        for y in range(n):
            for x in range(m):
                around = cam[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                if cam[y, x] > params.thresholds[c] and cam[y, x] >= around.max():
                    peaks.append((y, x))
        if not peaks:
            continue
        mask = np.zeros((height, width), dtype=np.uint8)
        visited = np.zeros((n, m), dtype=bool)
        for peak in peaks:  # flood fill: breadth first along non-increasing, activated pixels
            queue = deque([peak])
            visited[peak] = True
            while queue:
                y, x = queue.popleft()
                rect = _reference_rect(params, y, x)
                if rect is not None:
                    mask[rect[1] : rect[3] + 1, rect[0] : rect[2] + 1] = 1
                for dy, dx in _NEIGHBOURS:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < n and 0 <= nx < m and not visited[ny, nx] and cam[ny, nx] > params.floor \
                            and cam[ny, nx] <= cam[y, x]:
                        visited[ny, nx] = True
                        queue.append((ny, nx))
        boxes = _contour_boxes(mask)
        for box in boxes:
            best = -np.inf
            for y, x in peaks:
                rect = _reference_rect(params, y, x)
                if rect is None:
                    continue
                cx, cy = (rect[0] + rect[2] + 1) / 2.0, (rect[1] + rect[3] + 1) / 2.0
                if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
                    best = max(best, float(cam[y, x]))
            detections.append(Detection(c, best, tuple(float(v) for v in box)))
    return detections


# ------------------------------------------------------------------------------------------ front

def backprojected_area(cams: np.ndarray, params: LocalizerParams) -> np.ndarray:
    """(C, H, W) bool: the painted back-projection of every class's mountains (for pictures)."""
    cams = _check_cams(cams, params, 3)
    thresholds = np.where(params.enabled, params.thresholds, np.inf)
    reach = mountains(cams, find_peaks(cams, thresholds), params.floor)
    area = np.zeros((len(cams),) + params.input_size, dtype=bool)
    for c in np.flatnonzero(reach.any(axis=(1, 2))):
        for x0, y0, x1, y1 in _rectangles(params, *np.nonzero(reach[c])):
            area[c, y0 : y1 + 1, x0 : x1 + 1] = True
    return area


def localize(cams: np.ndarray, params: LocalizerParams, method: str = "fast") -> list[Detection]:
    """One image's CAMs (C, N, M) -> detections in network-input coordinates."""
    return _localize_checked(_check_cams(cams, params, 3), params, method)


def _localize_checked(cams: np.ndarray, params: LocalizerParams, method: str) -> list[Detection]:
    if method == "fast":
        return _localize_fast(cams, params)
    if method == "reference":
        return _localize_reference(cams, params)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def localize_batch(cams: np.ndarray, params: LocalizerParams, method: str = "fast") -> list[list[Detection]]:
    """(B, C, N, M) -> one list of detections per image."""
    cams = _check_cams(cams, params, 4)  # once for the batch, not again per image
    return [_localize_checked(cam, params, method) for cam in cams]
