"""Frame in, detections out: pre-processing + a backend + post-processing, with per-stage timings.

What the camera app and anyone embedding spamcam call. Boxes come back in the frame's own pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import Backend, open_backend
from .confidence import DEFAULT_MIN_CONFIDENCE, DEFAULT_OVERLAP_IOU, BoxPolicy
from .postprocess import Detection, localize
from .preprocess import Transform, preprocess

__all__ = ["Localizer", "FrameResult", "Prepared", "PendingResult"]


@dataclass
class Prepared:
    """A frame pre-processed for the network (Localizer.prepare)."""

    array: np.ndarray  # (C, H, W) float32
    transform: Transform
    preprocess_ms: float


@dataclass
class PendingResult:
    """A frame inferred but not yet post-processed (Localizer.infer_batch -> Localizer.finish)."""

    cams: np.ndarray  # (C, N, M)
    transform: Transform
    timings_ms: dict[str, float]  # preprocess, inference: this frame's share of its batch


@dataclass
class FrameResult:
    detections: list[Detection]  # boxes in frame pixels
    scores: np.ndarray  # (C,) P(present) from the CAM with the model's own pooling
    cams: np.ndarray  # (C, N, M)
    transform: Transform
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, inference, postprocess

    def to_dict(self, classes: Sequence[str]) -> dict:
        return {"detections": [d.to_dict(classes) for d in self.detections],
                "scores": {c: round(float(s), 6) for c, s in zip(classes, self.scores)},
                "latency_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


class Localizer:
    """`Localizer("model.onnx")(frame)` -> FrameResult. Frames are BGR or grey uint8 (OpenCV's)."""

    def __init__(self, model: str | Path | Backend, *, resize_mode: str | None = None, ratio: float | None = None,
                 min_score: float | None = None, min_confidence: float | None = DEFAULT_MIN_CONFIDENCE,
                 overlap_iou: float | None = DEFAULT_OVERLAP_IOU, method: str = "fast", **backend_options) -> None:
        """`min_confidence`: keep boxes whose confidence, and whose class's P(present) in the frame,
        reach it (None: every peak above t_c, the paper's rule); `overlap_iou`: of boxes of different
        classes overlapping this much, keep the most confident (None: keep all); `min_score`: also drop boxes whose raw CAM peak is below it;
        `ratio`: one r for widths and heights instead of the model's own."""
        self.backend = open_backend(model, **backend_options) if isinstance(model, (str, Path)) else model
        self.info = self.backend.info
        self.resize_mode = resize_mode or self.info.resize_mode
        self.params = self.info.localizer_params()
        self.head = self.info.classifier_head()
        if ratio is not None:
            self.params.ratio, self.params.ratio_y = float(ratio), None
        self.min_score = min_score
        self.policy = BoxPolicy(min_confidence=min_confidence, overlap_iou=overlap_iou)
        self.method = method

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    def __call__(self, frame: np.ndarray) -> FrameResult:
        return self.process_batch([frame])[0]

    def detect(self, cam: np.ndarray, policy: BoxPolicy | None = None,
               class_probabilities: np.ndarray | None = None) -> list[Detection]:
        """One image's CAMs (C, N, M) -> boxes in network-input pixels, with confidences, gated by
        `policy` (default: this Localizer's); `class_probabilities`: the image's P(present), if at hand."""
        detections = localize(cam, self.params, self.method)
        if self.min_score is not None:
            detections = [d for d in detections if d.score >= self.min_score]
        return (policy or self.policy).apply(detections, cam, self.head, self.params, class_probabilities)

    def prepare(self, frame: np.ndarray) -> Prepared:
        """Pre-processing of one frame (resize, channels, float): a multi-camera app runs it on each
        camera's own thread, so that the inference stage only runs the model."""
        start = time.perf_counter()
        array, transform = preprocess(frame, tuple(self.info.input_size), self.info.in_channels, self.resize_mode)
        return Prepared(array, transform, (time.perf_counter() - start) * 1000)

    def infer_prepared(self, prepared: Sequence[Prepared]) -> list[PendingResult]:
        """One inference call for frames already pre-processed (of one size: the model's input)."""
        start = time.perf_counter()
        cams = self.backend.infer(np.stack([p.array for p in prepared]))
        per_frame = (time.perf_counter() - start) * 1000 / len(prepared)
        return [PendingResult(cam, p.transform, {"preprocess": p.preprocess_ms, "inference": per_frame})
                for cam, p in zip(cams, prepared)]

    def infer_batch(self, frames: Sequence[np.ndarray]) -> list[PendingResult]:
        """Pre-processing and inference for a batch of frames; `finish` turns each into boxes (a
        pipelined app runs the two on different threads)."""
        return self.infer_prepared([self.prepare(frame) for frame in frames])

    def finish(self, pending: PendingResult, policy: BoxPolicy | None = None) -> FrameResult:
        """Post-processing of one inferred frame: boxes in frame pixels, confidences, P(present)."""
        start = time.perf_counter()
        scores = self.head.probabilities(pending.cams)  # reported, and what gating asks of each box's class
        detections = self.detect(pending.cams, policy, scores)
        boxes = pending.transform.boxes_to_frame(np.array([d.box for d in detections]).reshape(-1, 4))
        mapped = [replace(d, box=tuple(float(v) for v in b)) for d, b in zip(detections, boxes)]
        timings = {**pending.timings_ms, "postprocess": (time.perf_counter() - start) * 1000}
        return FrameResult(mapped, scores, pending.cams, pending.transform, timings)

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        return [self.finish(pending) for pending in self.infer_batch(frames)]

    def close(self) -> None:
        self.backend.close()
