"""Pictures of what the localizer did: CAM heat map, back-projected area, boxes (like paper Fig. 10).

Shared by `eval-cam --save-vis` and the camera app's overlay, so both draw the same thing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .errors import WriteError
from .metrics import box_iou

__all__ = ["to_bgr_uint8", "draw_heatmap", "draw_area", "draw_detections", "draw_truth", "heat_scale", "contact_sheet",
           "write_png", "render_example", "legend", "GREEN", "RED", "WHITE", "TRUTH"]

GREEN, RED, WHITE, YELLOW = (0, 200, 0), (0, 0, 230), (255, 255, 255), (0, 220, 255)
TRUTH = (255, 0, 255)  # ground truth, magenta: apart from hits (green), misses (red), area (yellow) and any JET heat
_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.35


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


def heat_scale(cams: np.ndarray, percentile: float = 99.0) -> tuple[float, float]:
    """One colour scale for a whole set of CAMs (B, C, N, M): from 0 (not activated: mountains stop
    there) to a high percentile of the images' peaks, so that the same colour means the same activation
    in every picture of one model, and a single outlier does not wash the others out."""
    peaks = np.asarray(cams, dtype=np.float64).reshape(len(cams), -1).max(axis=1) if len(cams) else np.zeros(1)
    high = float(np.percentile(peaks, percentile))
    return 0.0, high if high > 0 else 1.0


def draw_heatmap(canvas: np.ndarray, cam: np.ndarray, alpha: float = 0.45, region: Sequence[float] | None = None,
                 scale: tuple[float, float] | None = None) -> np.ndarray:
    """Blend a JET-coloured map over the canvas (or over region x0, y0, x1, y1): on a fixed `scale`
    (low, high) where pictures are compared (heat_scale), else min-max normalised (a live overlay).
    Pass a CAM already laid onto the network input (runtime.metrics.cam_to_input) so that heat sits
    where the receptive fields are."""
    x0, y0, x1, y1 = (0, 0, canvas.shape[1], canvas.shape[0]) if region is None else (int(round(v)) for v in region)
    low, high = (float(cam.min()), float(cam.max())) if scale is None else scale
    normalised = np.clip((cam - low) / (high - low), 0, 1) if high > low else np.zeros_like(cam)
    heat = cv2.applyColorMap((normalised * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(heat, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_LINEAR)
    target = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = cv2.addWeighted(target, 1 - alpha, heat[: target.shape[0], : target.shape[1]], alpha, 0)
    return canvas


def draw_area(canvas: np.ndarray, area: np.ndarray, colour=YELLOW, alpha: float = 0.35, outline: bool = False) -> np.ndarray:
    """Tint the back-projected area (H, W bool, same size as canvas); with `outline`, also trace its
    border, which stays visible over a heat map."""
    if area.any():
        tint = canvas.copy()
        tint[area] = colour
        canvas[:] = cv2.addWeighted(canvas, 1 - alpha, tint, alpha, 0)
        if outline:
            contours, _ = cv2.findContours(area.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, colour, 1)
    return canvas


def draw_truth(canvas: np.ndarray, gt_boxes: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Ground-truth boxes (K, 5: class, x0, y0, x1, y1) in their own colour."""
    for _, x0, y0, x1, y1 in np.asarray(gt_boxes).reshape(-1, 5):
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), TRUTH, thickness)
    return canvas


def _place_label(size: tuple[int, int], box: tuple[int, int, int, int], taken: list, bounds: tuple[int, int]):
    """Top-left corner for a label of `size` near `box`, clear of the labels already `taken`: above the
    box, else inside its top, else below it, else stepped down until free; kept inside the image."""
    (w, h), (x0, y0, x1, y1), (width, height) = size, box, bounds
    candidates = [(x0, y0 - h - 2), (x0 + 1, y0 + 1), (x0, y1 + 1)] + [(x0, y0 + 1 + k * (h + 2)) for k in range(1, 12)]
    fitted = [(min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h))) for x, y in candidates]
    for x, y in fitted:
        if all(x + w <= tx or tx + tw <= x or y + h <= ty or ty + th <= y for tx, ty, tw, th in taken):
            return x, y
    return fitted[0]


def draw_detections(canvas: np.ndarray, detections, classes: Sequence[str], gt_boxes: np.ndarray | None = None,
                    iou_threshold: float = 0.5, thickness: int = 1, confidences: Sequence[float] | None = None,
                    font_scale: float = _FONT_SCALE, track_ids: Sequence[int | None] | None = None) -> np.ndarray:
    """Boxes labelled with class, track ID (where given) and confidence (given per detection) or else
    the box's score; with ground truth: green = matches a box of its class, red = not. Labels sit on
    a dark plate and are moved so that they never cover each other."""
    gt = np.zeros((0, 5)) if gt_boxes is None else np.asarray(gt_boxes).reshape(-1, 5)
    taken: list[tuple[int, int, int, int]] = []
    for k, det in enumerate(detections):
        colour = YELLOW
        if gt_boxes is not None:
            own = gt[gt[:, 0] == det.class_index, 1:]
            colour = GREEN if len(own) and box_iou(np.asarray(det.box)[None], own).max() >= iou_threshold else RED
        box = tuple(int(round(v)) for v in det.box)
        cv2.rectangle(canvas, box[:2], (max(box[0], box[2] - 1), max(box[1], box[3] - 1)), colour, thickness)
        if confidences is not None:
            value = f"{confidences[k]:.2f}"
        else:  # the box's own confidence where it has one, else the paper's raw peak
            value = f"{det.confidence:.2f}" if det.confidence is not None else f"{det.score:.1f}"
        track = f" #{track_ids[k]}:" if track_ids is not None and track_ids[k] else ""
        label = f"{classes[det.class_index]}{track} {value}"
        (w, h), base = cv2.getTextSize(label, _FONT, font_scale, 1)
        x, y = _place_label((w + 2, h + base + 2), box, taken, (canvas.shape[1], canvas.shape[0]))
        taken.append((x, y, w + 2, h + base + 2))
        cv2.rectangle(canvas, (x, y), (x + w + 1, y + h + base + 1), (0, 0, 0), -1)
        cv2.putText(canvas, label, (x + 1, y + h + 1), _FONT, font_scale, colour, 1, cv2.LINE_AA)
    return canvas


def contact_sheet(tiles: Sequence[np.ndarray], columns: int = 4, gap: int = 4, caption: str | None = None) -> np.ndarray:
    """One picture of many: tiles (BGR, same size) in a grid on a dark background, a caption line below."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one picture")
    height, width = tiles[0].shape[:2]
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 32, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[gap + r * (height + gap): gap + r * (height + gap) + height, gap + c * (width + gap): gap + c * (width + gap) + width] = tile
    if caption:
        lines = caption.splitlines()
        strip = np.full((18 * len(lines) + 6, sheet.shape[1], 3), 32, np.uint8)
        for i, line in enumerate(lines):
            cv2.putText(strip, line, (gap, 16 + 18 * i), _FONT, 0.45, WHITE, 1, cv2.LINE_AA)
        sheet = np.vstack([sheet, strip])
    return sheet


def write_png(path, image: np.ndarray) -> None:
    """cv2.imwrite, but a picture that was not written (read-only folder, full disk) is an error, never
    a silent False."""
    if not cv2.imwrite(str(path), image):
        Path(path).unlink(missing_ok=True)  # a truncated PNG would pass for a picture
        raise WriteError(f"{path}: not written (read-only folder, or no space left?)")


def render_example(image: np.ndarray, cams: np.ndarray, detections, params, classes: Sequence[str], *,
                   gt_boxes: np.ndarray | None = None, confidences: Sequence[float] | None = None,
                   scale: tuple[float, float] | None = None, class_index: int | None = None,
                   zoom: int = 3) -> np.ndarray:
    """The paper's Fig. 10 for one image: the CAM of `class_index` (default: the strongest) as heat on
    `scale`, the back-projected area tinted and outlined, ground truth in its own colour, predicted
    boxes green (hit) or red (miss) with non-overlapping labels. The input is enlarged `zoom` times
    before boxes and text are drawn, so small inputs stay legible."""
    from dataclasses import replace

    from .metrics import cam_to_input
    from .postprocess import backprojected_area

    cams = np.asarray(cams)
    canvas = to_bgr_uint8(image)
    cls = int(np.argmax(cams.reshape(len(cams), -1).max(axis=1))) if class_index is None else class_index
    heat = cam_to_input(cams[cls], params.chain, params.input_size, params.affine)  # where the boxes' fields sit
    draw_heatmap(canvas, heat, alpha=0.4, scale=scale)
    draw_area(canvas, backprojected_area(cams, params).any(axis=0), alpha=0.2)
    canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    area = cv2.resize(backprojected_area(cams, params).any(axis=0).astype(np.uint8), None, fx=zoom, fy=zoom,
                      interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(area, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, YELLOW, 1)
    truth = None
    if gt_boxes is not None:
        truth = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 5).copy()
        truth[:, 1:] *= zoom
        draw_truth(canvas, truth, thickness=2)
    scaled = [replace(det, box=tuple(v * zoom for v in det.box)) for det in detections]
    return draw_detections(canvas, scaled, classes, truth, confidences=confidences, font_scale=0.4)


def legend(scale: tuple[float, float], what_confidence: str) -> str:
    """The caption that says how to read render_example's pictures."""
    return (f"heat: CAM of the strongest class, blue 0 .. red {scale[1]:.3g} (one scale for all pictures); "
            "yellow outline: back-projected area\n"
            f"magenta: ground truth; green / red: predicted box that hits (IoU >= 0.5) / misses; label: class, {what_confidence}")


def write_pictures(folder: Path, images: Sequence[np.ndarray], cams: np.ndarray, detections, gt_boxes, labels,
                   params, classes: Sequence[str], count: int) -> tuple[int, str | None]:
    """One PNG per example and a contact sheet of them all, every heat map on one fixed scale; the
    images that contain a class first. Returns how many were written and, when writing stopped (a full
    disk, a read-only folder), why: a picture that cannot be written must not cost the caller's results."""
    from .output_paths import writable_folder

    scale = heat_scale(cams)
    order = sorted(range(len(labels)), key=lambda i: -float(np.asarray(labels[i]).sum()))[:count]
    tiles = []
    try:
        writable_folder(folder, "--save-vis")
        for i in order:
            tile = render_example(images[i], cams[i], detections[i], params, classes, gt_boxes=gt_boxes[i], scale=scale)
            write_png(folder / f"{i:05d}.png", tile)
            tiles.append(tile)
        if tiles:
            write_png(folder / "contact_sheet.png",
                      contact_sheet(tiles, columns=min(6, len(tiles)), caption=legend(scale, "box confidence (P(present) of the instance)")))
    except WriteError as error:
        return len(tiles), str(error)
    return len(tiles) + bool(tiles), None
