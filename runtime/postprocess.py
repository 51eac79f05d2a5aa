"""CAMs -> boxes (paper §3.1.1, Fig. 4, Algorithm 1; docs/method.md "Inference").

Per class map: peaks above t_c -> flood-filled "mountains" (non-increasing paths, value > floor and,
with a relative floor, > that share of their peak) -> each mountain pixel's receptive field by fast
back-projection, resized by r -> the union of those rectangles -> external contours -> bounding boxes,
scored by the highest peak inside. The "interpolated" projection (ours, for deep backbones) replaces
the receptive fields by the map interpolated over its stride tiles: each peak's region above its
floor, boxed and resized by r (docs/method.md, "Boxes from deep backbones").

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

import functools
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import cv2
import numpy as np

from .geometry import (PROJECTIONS, Chain, apply_ratio, projected_affine, projected_centres, receptive_field,
                       validate_chain)

__all__ = ["Detection", "LocalizerParams", "find_peaks", "mountains", "localize", "localize_batch", "localizer_over_ratios",
           "METHODS", "backprojected_area", "PROJECTIONS", "BoxSettings", "describe_ratio"]

METHODS = ("fast", "reference")
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
_SQUARE = np.ones((3, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Detection:
    class_index: int
    score: float  # the highest CAM peak inside the box (the paper's box score)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (x1, y1 exclusive)
    confidence: float | None = None  # P(present) of this instance, in [0, 1] (runtime/confidence.py)
    confidence_logit: float | None = None  # the confidence before its sigmoid: ranks without ties at 1.0

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
    projection: str = "theoretical"  # what a CAM pixel is projected onto (runtime/geometry.py PROJECTIONS)
    relative_floor: float = 0.0  # a mountain also stops at values <= this share of its own peak (0: the paper's)
    ratio_y: float | None = None  # r for heights where it differs from widths' (None: `ratio`, the paper's one r)

    def __post_init__(self) -> None:
        self.chain = validate_chain(self.chain)
        thresholds = [np.nan if t is None else float(t) for t in self.thresholds]
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.enabled is None:
            self.enabled = np.isfinite(self.thresholds)
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))

    @property
    def affine(self) -> tuple[int, int, int]:
        """(S, A, B): CAM pixel x stands for input pixels [x*S + A, x*S + B] (Algorithm 1 folded, or the
        tile of the interpolated projection); cached by chain and projection."""
        return projected_affine(self.chain, self.projection)

    @property
    def ratios(self) -> tuple[float, float]:
        """(r for widths, r for heights)."""
        return float(self.ratio), float(self.ratio if self.ratio_y is None else self.ratio_y)


@dataclass(frozen=True)
class BoxSettings:
    """The post-processing choices tuned on validation boxes and stored in the model: the paper tunes
    r; we also choose the projection, the relative floor and, where objects are not square on
    average, a separate r for heights (docs/method.md, "Boxes from deep backbones"); and how a box's
    confidence is computed (runtime/confidence.py: None is the instance form, else the peak form's
    per-class line: scales and offsets)."""

    projection: str = "theoretical"
    relative_floor: float = 0.0
    ratio: float = 0.0
    ratio_y: float | None = None  # None: `ratio` for heights too (the paper's one r)
    confidence_peak_scales: tuple[float, ...] | None = None  # None: confidence from the instance's cells
    confidence_peak_offsets: tuple[float, ...] | None = None  # the peak form's intercepts; None: zeros

    def fields(self) -> dict:
        scales, offsets = self.confidence_peak_scales, self.confidence_peak_offsets
        return {"projection": self.projection, "relative_floor": float(self.relative_floor) + 0.0,
                "ratio": float(self.ratio) + 0.0,  # + 0.0: no "-0" in files and logs
                "ratio_y": None if self.ratio_y is None else float(self.ratio_y) + 0.0,
                "confidence_peak_scales": None if scales is None else [float(v) for v in scales],
                "confidence_peak_offsets": None if offsets is None else [float(v) for v in offsets]}

    def applied(self, params: "LocalizerParams") -> "LocalizerParams":
        """`params` with these boxes' settings (the confidence form is the head's: ClassifierHead.for_settings)."""
        return replace(params, **{k: v for k, v in self.fields().items() if k in _BOX_FIELDS})

    @classmethod
    def of(cls, params_or_config) -> "BoxSettings":
        scales = getattr(params_or_config, "confidence_peak_scales", None)
        offsets = getattr(params_or_config, "confidence_peak_offsets", None)
        return cls(params_or_config.projection, params_or_config.relative_floor, params_or_config.ratio,
                   getattr(params_or_config, "ratio_y", None), None if scales is None else tuple(scales),
                   None if offsets is None else tuple(offsets))

    @classmethod
    def from_fields(cls, values: dict) -> "BoxSettings":
        """From `fields()`' keys in a dict (eval-cam's result, a log): absent keys take the paper's."""
        scales, offsets = values.get("confidence_peak_scales"), values.get("confidence_peak_offsets")
        known = {k: values[k] for k in _BOX_FIELDS if k in values}
        return cls(**known, confidence_peak_scales=None if scales is None else tuple(scales),
                   confidence_peak_offsets=None if offsets is None else tuple(offsets))

    def with_confidence_form_of(self, other: "BoxSettings") -> "BoxSettings":
        """These boxes with `other`'s confidence form (settings tuned by the peak keep the stored form)."""
        return replace(self, confidence_peak_scales=other.confidence_peak_scales,
                       confidence_peak_offsets=other.confidence_peak_offsets)

    @property
    def confidence_form(self) -> str:
        return "instance" if self.confidence_peak_scales is None else "peak"

    def describe(self) -> str:
        return (f"projection {self.projection}, relative floor {self.relative_floor:g}, "
                f"{describe_ratio(self.ratio, self.ratio_y)}"
                + ("" if self.confidence_peak_scales is None else ", confidence from the peak"))


_BOX_FIELDS = ("projection", "relative_floor", "ratio", "ratio_y")  # what LocalizerParams takes of BoxSettings


def describe_ratio(ratio: float, ratio_y: float | None = None) -> str:
    """"r = 0.5", or "r = 0.55 (widths) / 0.45 (heights)" where heights have their own."""
    if ratio_y is None:
        return f"r = {ratio:g}"
    return f"r = {ratio:g} (widths) / {ratio_y:g} (heights)"


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


def mountains(cams: np.ndarray, seeds: np.ndarray, floor: float, relative_floor: float = 0.0) -> np.ndarray:
    """(C, N, M) bool: pixels reachable from a seed through 8-neighbours along non-increasing values
    that stay above `floor` and, with a relative floor, above that share of the seed's own value
    (the seeds themselves always included).

    cv2.floodFill in its floating-range mode admits a pixel when it is within [-loDiff, +upDiff] of
    the neighbour it is reached from; upDiff = 0 and an unbounded loDiff is exactly "not higher than
    the neighbour". Pixels already filled by an earlier seed stop a later fill, which loses nothing:
    whatever is reachable through them was reached from them."""
    reached = seeds.copy()
    height, width = cams.shape[1:]
    for c in np.flatnonzero(seeds.any(axis=(1, 2))):
        image = np.ascontiguousarray(cams[c], dtype=np.float32)
        if relative_floor > 0:  # every seed its own barrier, so each fill needs its own mask
            for y, x in zip(*np.nonzero(seeds[c])):
                mask = np.zeros((height + 2, width + 2), dtype=np.uint8)
                mask[1:-1, 1:-1] = image <= max(floor, relative_floor * float(image[y, x]))
                mask[y + 1, x + 1] = 0
                cv2.floodFill(image, mask, (int(x), int(y)), 0, loDiff=1e30, upDiff=0, flags=_FLOOD_FLAGS)
                reached[c] |= mask[1:-1, 1:-1] == _FILL
            continue
        mask = np.zeros((height + 2, width + 2), dtype=np.uint8)
        mask[1:-1, 1:-1] = image <= floor
        for y, x in zip(*np.nonzero(seeds[c])):
            if mask[y + 1, x + 1] == 0:
                cv2.floodFill(image, mask, (int(x), int(y)), 0, loDiff=1e30, upDiff=0, flags=_FLOOD_FLAGS)
        reached[c] |= mask[1:-1, 1:-1] == _FILL
    return reached


@functools.lru_cache(maxsize=256)
def _axis_cells(affine: tuple[int, float, float], ratio: float, extent: int, count: int):
    """Along one axis of a CAM with `count` cells: each cell's back-projected, ratio-resized range
    rounded to inclusive pixels and clipped to the image (lo, hi), whether it survives (r >= 1 can make
    a range vanish, and a field can lie wholly outside the image), the edges of the compressed grid
    those ranges make, and which grid cells each range covers, (count, cells) float32.

    A rectangle is the product of its column's x range and its row's y range, so these per-axis
    tables, cached per model geometry and r, replace per-pixel rectangle arithmetic on every frame."""
    stride, low, high = affine
    index = np.arange(count, dtype=np.float64)
    lo, hi = apply_ratio(index * stride + low, index * stride + high, ratio)
    lo, hi = np.floor(np.asarray(lo) + 0.5), np.floor(np.asarray(hi) + 0.5)
    kept = (hi >= lo) & (hi >= 0) & (lo <= extent - 1)
    lo, hi = lo.clip(0, extent - 1).astype(np.int64), hi.clip(0, extent - 1).astype(np.int64)
    edges = np.unique(np.concatenate([lo[kept], hi[kept] + 1]))
    cover = np.zeros((count, max(len(edges) - 1, 0)), dtype=np.float32)
    for i in np.flatnonzero(kept):
        cover[i, np.searchsorted(edges, lo[i]) : np.searchsorted(edges, hi[i] + 1)] = 1.0
    for table in (lo, hi, kept, edges, cover):
        table.flags.writeable = False  # shared through the cache
    return lo, hi, kept, edges, cover


def _rectangles(params: LocalizerParams, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(K, 4) int inclusive x0, y0, x1, y1 of the surviving rectangles of CAM pixels (rows, cols)."""
    (height, width), n, m = params.input_size, int(np.max(rows, initial=0)) + 1, int(np.max(cols, initial=0)) + 1
    ratio_x, ratio_y = params.ratios
    ylo, yhi, ykept, _, _ = _axis_cells(params.affine, ratio_y, height, n)
    xlo, xhi, xkept, _, _ = _axis_cells(params.affine, ratio_x, width, m)
    kept = ykept[rows] & xkept[cols]
    rows, cols = rows[kept], cols[kept]
    return np.stack([xlo[cols], ylo[rows], xhi[cols], yhi[rows]], 1).reshape(-1, 4)


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


def _active_peaks(cams: np.ndarray, params: LocalizerParams):
    """(indices of the classes that can have a peak, their maps, their peaks): only classes whose
    maximum clears t_c, usually a few of many."""
    thresholds = np.where(params.enabled, params.thresholds, np.inf)
    active = np.flatnonzero(cams.reshape(len(cams), -1).max(axis=1) > thresholds)
    return active, cams[active], find_peaks(cams[active], thresholds[active])


def _localize_fast(cams: np.ndarray, params: LocalizerParams) -> list[Detection]:
    if params.projection == "interpolated":
        return _localize_interpolated(cams, params, _fill_fast)
    return _boxes_of_flood(_flood(cams, params), params)


def _flood(cams: np.ndarray, params: LocalizerParams) -> tuple:
    """What boxes come from before r is applied: the classes that can have a peak, their maps, their
    peaks and the mountains flooded from them. None of it depends on r."""
    active, cams, peaks = _active_peaks(cams, params)
    if len(active) == 0:
        return active, cams, peaks, None
    return active, cams, peaks, mountains(cams, peaks, params.floor, params.relative_floor)


def _boxes_of_flood(flood: tuple, params: LocalizerParams) -> list[Detection]:
    """Algorithm 1's back-projection of flooded mountains at params' r, and their boxes."""
    active, cams, peaks, reach = flood
    if len(active) == 0:
        return []
    (height, width), (n, m) = params.input_size, cams.shape[1:]
    ratio_x, ratio_y = params.ratios
    ylo, yhi, ykept, ys, cover_y = _axis_cells(params.affine, ratio_y, height, n)
    xlo, xhi, xkept, xs, cover_x = _axis_cells(params.affine, ratio_x, width, m)
    # Paint every mountain pixel's rectangle into a coordinate-compressed grid per class at once: a
    # grid cell is covered when some mountain pixel's row covers its y and its column its x, which is
    # the (0/1) matrix product cover_y^T . reach . cover_x. Exact: the counts are small integers.
    covered = (cover_y.T @ reach.astype(np.float32) @ cover_x) > 0  # (K, grid rows, grid columns)
    pk, prow, pcol = np.nonzero(peaks)
    pkept = ykept[prow] & xkept[pcol]
    pk, prow, pcol = pk[pkept], prow[pkept], pcol[pkept]
    centres = np.stack([(xlo[pcol] + xhi[pcol] + 1) / 2.0, (ylo[prow] + yhi[prow] + 1) / 2.0], axis=1)
    values = cams[pk, prow, pcol]
    detections = []
    for index in np.flatnonzero(covered.any(axis=(1, 2))):
        boxes = _contour_boxes(covered[index].astype(np.uint8), xs, ys)
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
    ratio_x, ratio_y = params.ratios
    w, h = x1 - x0, y1 - y0
    x0, x1 = x0 + w * ratio_x / 2, x1 - w * ratio_x / 2
    y0, y1 = y0 + h * ratio_y / 2, y1 - h * ratio_y / 2
    x0, x1, y0, y1 = (int(np.floor(v + 0.5)) for v in (x0, x1, y0, y1))
    height, width = params.input_size
    if x1 < x0 or y1 < y0 or x1 < 0 or y1 < 0 or x0 > width - 1 or y0 > height - 1:
        return None
    return max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)


def _localize_reference(cams: np.ndarray, params: LocalizerParams) -> list[Detection]:
    if params.projection == "interpolated":
        return _localize_interpolated(cams, params, _fill_reference)
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
            floor = params.floor
            if params.relative_floor > 0:  # each peak its own floor: its own fill
                floor = max(floor, params.relative_floor * float(cam[peak]))
                visited = np.zeros((n, m), dtype=bool)
            queue = deque([peak])
            visited[peak] = True
            while queue:
                y, x = queue.popleft()
                rect = _reference_rect(params, y, x)
                if rect is not None:
                    mask[rect[1] : rect[3] + 1, rect[0] : rect[2] + 1] = 1
                for dy, dx in _NEIGHBOURS:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < n and 0 <= nx < m and not visited[ny, nx] and cam[ny, nx] > floor \
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


# -------------------------------------------------------------------------------------- interpolated

def interpolated_map(cam: np.ndarray, params: LocalizerParams) -> np.ndarray:
    """(H, W) float32: one class map resized bilinearly by its stride S, so that CAM pixel x lands on
    the centre of its tile [x*S + A, x*S + A + S - 1] (`projected_affine`; cv2.resize's pixel-centre
    convention); input pixels outside the map's tiles read -inf. Bilinear, not bicubic: it never
    overshoots, so the region above a floor never reaches past the CAM pixels above it (bicubic's
    ringing joined spurious lobes to a lone peak's region; docs/results.md measures both)."""
    stride, start, _ = params.affine
    height, width = params.input_size
    rows, cols = cam.shape
    up = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (cols * stride, rows * stride),
                    interpolation=cv2.INTER_LINEAR)
    out = np.full((height, width), -np.inf, dtype=np.float32)
    top, skip = max(start, 0), max(-start, 0)  # the first tile may begin before the input (k < S): cropped
    # and the tiles may start past a tiny input: nothing to lay
    h, w = (max(0, min(size - top, up.shape[axis] - skip)) for axis, size in enumerate((height, width)))
    out[top : top + h, top : top + w] = up[skip : skip + h, skip : skip + w]
    return out


def _seed_pixel(params: LocalizerParams, row: int, col: int) -> tuple[int, int]:
    """(y, x) input pixel at the centre of CAM pixel (row, col)'s tile, inside the input."""
    stride, start, _ = params.affine
    height, width = params.input_size
    return (min(start + row * stride + stride // 2, height - 1),
            min(start + col * stride + stride // 2, width - 1))


def _fill_fast(above: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """Pixels 8-connected to `seed` through True pixels of `above` (the seed always included)."""
    image = above.astype(np.uint8)
    image[seed] = 1
    cv2.floodFill(image, None, (int(seed[1]), int(seed[0])), 2, 0, 0, 8)
    return image == 2


def _fill_reference(above: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """_fill_fast written out: a breadth-first walk over 8-neighbours."""
    height, width = above.shape
    region = np.zeros_like(above, dtype=bool)
    region[seed] = True
    queue = deque([seed])
    while queue:
        y, x = queue.popleft()
        for dy, dx in _NEIGHBOURS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width and above[ny, nx] and not region[ny, nx]:
                region[ny, nx] = True
                queue.append((ny, nx))
    return region


def _interpolated_regions(cams: np.ndarray, params: LocalizerParams, fill=_fill_fast):
    """Per class with a peak: (class index, (H, W) bool region of all its mountains, its peaks). A
    mountain's region is the part of the interpolated map around its peak above the mountain's floor:
    the flood floor or, with a relative floor, that share of its own peak, whichever is higher."""
    active, maps, peaks = _active_peaks(cams, params)
    for index, c in enumerate(active):
        up = interpolated_map(maps[index], params)
        region = np.zeros(params.input_size, dtype=bool)
        for row, col in zip(*np.nonzero(peaks[index])):
            floor = max(params.floor, params.relative_floor * float(maps[index][row, col]))
            region |= fill(up > floor, _seed_pixel(params, row, col))
        yield int(c), region, peaks[index], maps[index]


def _localize_interpolated(cams: np.ndarray, params: LocalizerParams, fill) -> list[Detection]:
    """Boxes around each class's regions (external contours), resized by r about their centre, scored
    by the highest peak whose tile centre lies inside."""
    height, width = params.input_size
    detections = []
    for c, region, peaks, cam in _interpolated_regions(cams, params, fill):
        boxes = _contour_boxes(region.astype(np.uint8))
        ratio_x, ratio_y = params.ratios
        if ratio_x or ratio_y:
            x0, x1 = apply_ratio(boxes[:, 0], boxes[:, 2], ratio_x)
            y0, y1 = apply_ratio(boxes[:, 1], boxes[:, 3], ratio_y)
            boxes = np.stack([x0.clip(0, width), y0.clip(0, height), x1.clip(0, width), y1.clip(0, height)], 1)
        rows, cols = np.nonzero(peaks)
        centres = np.stack([projected_centres(params.affine, cols), projected_centres(params.affine, rows)], 1)
        scores = _score_boxes(boxes, centres, cam[rows, cols])
        detections += [Detection(c, float(s), tuple(float(v) for v in b)) for b, s in zip(boxes, scores)]
    return detections


# ------------------------------------------------------------------------------------------ front

def backprojected_area(cams: np.ndarray, params: LocalizerParams) -> np.ndarray:
    """(C, H, W) bool: the painted back-projection of every class's mountains (for pictures)."""
    cams = _check_cams(cams, params, 3)
    if params.projection == "interpolated":
        area = np.zeros((len(cams),) + params.input_size, dtype=bool)
        for c, region, _, _ in _interpolated_regions(cams, params):
            area[c] = region
        return area
    thresholds = np.where(params.enabled, params.thresholds, np.inf)
    reach = mountains(cams, find_peaks(cams, thresholds), params.floor, params.relative_floor)
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


def localizer_over_ratios(cams: np.ndarray, params: LocalizerParams) -> Callable[[float, float | None], list[list[Detection]]]:
    """For tuning r: (ratio, ratio_y) -> what localize_batch(cams, params with that r) returns.

    Peaks and mountains do not depend on r, only the rectangles Algorithm 1 projects them onto, so
    they are flooded once here and every r after that only projects: the same detections, the flood
    (about a third of a box's cost) paid once instead of once per r tried. The interpolated projection
    is localized in full for each r."""
    cams = _check_cams(cams, params, 4)
    if params.projection == "interpolated":
        return lambda ratio, ratio_y=None: localize_batch(cams, replace(params, ratio=ratio, ratio_y=ratio_y))
    floods = [_flood(cam, params) for cam in cams]

    def boxes_at(ratio: float, ratio_y: float | None = None) -> list[list[Detection]]:
        at = replace(params, ratio=ratio, ratio_y=ratio_y)
        return [_boxes_of_flood(flood, at) for flood in floods]

    return boxes_at
