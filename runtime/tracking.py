"""Stable object IDs across frames: an IoU tracker in the manner of jetson-inference's (detectNet's
`--tracking`), per class.

A detection continues the track of the same class it overlaps most (IoU >= `iou_threshold`); each
detection and track is matched at most once per frame. A track is *confirmed* once it was seen in
`min_frames` consecutive frames (what filters one-frame false positives; a candidate that misses a
frame is dropped) and *ended* after `drop_frames` frames without a match (what bridges missed
detections). Only confirmed tracks have an ID a user
sees; IDs count up from 1 and are never reused in a run.

Matching is greedy by IoU, best pair first — what jetson-inference does — or, with `matching=
"hungarian"`, the assignment of largest total IoU (scipy's `linear_sum_assignment`, where scipy is
installed). Greedy needs nothing beyond numpy and is what runs by default: objects of one class that
overlap each other strongly are where the two differ, and there greedy is the documented behaviour
users know. No tracker library is used: the well-kept ones (norfair, ByteTrack's ports, motpy) pull
in scipy, filterpy or torch-era pins, more than a Jetson's runtime install should carry for ~100 lines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import ConfigError
from .metrics import box_iou
from .postprocess import Detection

__all__ = ["Track", "TrackerUpdate", "IouTracker", "MATCHINGS", "DEFAULT_TRACK_IOU", "DEFAULT_MIN_FRAMES",
           "DEFAULT_DROP_FRAMES"]

MATCHINGS = ("greedy", "hungarian")
DEFAULT_TRACK_IOU = 0.3  # boxes of a moving object overlap less frame to frame than jetson-inference's 0.5 assumes
DEFAULT_MIN_FRAMES = 3  # jetson-inference's minFrames
DEFAULT_DROP_FRAMES = 15  # jetson-inference's dropFrames
# A sighting becomes a track's best only when its confidence beats the best by more than this, so
# that jitter in the last digits (0.991, 0.993, ...) does not churn snapshots and update events.
BEST_MARGIN = 0.01


@dataclass
class Track:
    """One object followed over frames. `id` is 0 until the track is confirmed."""

    class_index: int
    box: tuple[float, float, float, float]
    confidence: float
    first_frame: int
    last_frame: int
    id: int = 0
    hits: int = 1  # frames with a matching detection
    misses: int = 0  # frames since the last match
    best_confidence: float = 0.0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    best_frame: int = 0

    @property
    def confirmed(self) -> bool:
        return self.id > 0


@dataclass
class TrackerUpdate:
    """What one frame changed: the track of each detection (confirmed or not yet), the tracks
    confirmed this frame, the tracks that ended, and every confirmed track still alive."""

    tracks: list[Track]
    confirmed: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)
    active: list[Track] = field(default_factory=list)

    @property
    def track_ids(self) -> list[int | None]:
        """Each detection's track ID, None while its track is not confirmed."""
        return [t.id or None for t in self.tracks]


class IouTracker:
    """`update(detections, frame_index)` once per frame, in order."""

    def __init__(self, *, iou_threshold: float = DEFAULT_TRACK_IOU, min_frames: int = DEFAULT_MIN_FRAMES,
                 drop_frames: int = DEFAULT_DROP_FRAMES, matching: str = "greedy") -> None:
        if not 0 < iou_threshold <= 1:
            raise ConfigError(f"the tracker's IoU threshold must be in (0, 1], got {iou_threshold}")
        if min_frames < 1 or drop_frames < 0:
            raise ConfigError(f"min_frames must be >= 1 and drop_frames >= 0, got {min_frames} and {drop_frames}")
        if matching not in MATCHINGS:
            raise ConfigError(f"matching must be one of {MATCHINGS}, got {matching!r}")
        if matching == "hungarian":
            try:
                from scipy.optimize import linear_sum_assignment  # noqa: F401
            except ImportError as error:
                raise ConfigError("matching 'hungarian' needs scipy (pip install scipy); 'greedy' needs nothing") from error
        self.iou_threshold, self.min_frames, self.drop_frames, self.matching = iou_threshold, min_frames, drop_frames, matching
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, detections: Sequence[Detection], frame_index: int) -> TrackerUpdate:
        assigned = self._match(detections)
        update = TrackerUpdate(tracks=[None] * len(detections))
        for det_index, track in assigned.items():
            detection = detections[det_index]
            track.box, track.confidence = tuple(detection.box), _confidence(detection)
            track.hits, track.misses, track.last_frame = track.hits + 1, 0, frame_index
            self._note_best(track, frame_index)
            if not track.confirmed and track.hits >= self.min_frames:
                self._confirm(track, update)
            update.tracks[det_index] = track
        for det_index, detection in enumerate(detections):
            if det_index in assigned:
                continue
            track = Track(detection.class_index, tuple(detection.box), _confidence(detection), frame_index, frame_index)
            self._note_best(track, frame_index)
            self.tracks.append(track)
            if self.min_frames <= 1:
                self._confirm(track, update)
            update.tracks[det_index] = track
        alive = []
        for track in self.tracks:
            if track.last_frame != frame_index:
                track.misses += 1
            if not track.confirmed and track.misses:  # a candidate must be seen in consecutive frames
                continue
            if track.misses > self.drop_frames:
                update.ended.append(track)
                continue
            alive.append(track)
        self.tracks = alive
        update.active = [t for t in self.tracks if t.confirmed]
        return update

    def finish(self) -> list[Track]:
        """End every track (the source ended): the confirmed ones, for their `end` events."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended

    def _confirm(self, track: Track, update: TrackerUpdate) -> None:
        track.id = self._next_id
        self._next_id += 1
        update.confirmed.append(track)

    @staticmethod
    def _note_best(track: Track, frame_index: int) -> None:
        if track.confidence > track.best_confidence + BEST_MARGIN or track.hits == 1:
            track.best_confidence, track.best_box, track.best_frame = track.confidence, track.box, frame_index

    def _match(self, detections: Sequence[Detection]) -> dict[int, Track]:
        """detection index -> track, class by class."""
        assigned: dict[int, Track] = {}
        for class_index in {d.class_index for d in detections}:
            det_indices = [i for i, d in enumerate(detections) if d.class_index == class_index]
            tracks = [t for t in self.tracks if t.class_index == class_index]
            if not tracks:
                continue
            iou = box_iou(np.array([detections[i].box for i in det_indices], dtype=np.float64),
                              np.array([t.box for t in tracks], dtype=np.float64))
            for row, col in self._pairs(iou):
                assigned[det_indices[row]] = tracks[col]
        return assigned

    def _pairs(self, iou: np.ndarray) -> list[tuple[int, int]]:
        if self.matching == "hungarian":
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(-iou)
            return [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= self.iou_threshold]
        pairs, used_rows, used_cols = [], set(), set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            row, col = divmod(int(flat), iou.shape[1])
            if iou[row, col] < self.iou_threshold:
                break
            if row not in used_rows and col not in used_cols:
                pairs.append((row, col))
                used_rows.add(row)
                used_cols.add(col)
        return pairs


def _confidence(detection: Detection) -> float:
    return float(detection.confidence if detection.confidence is not None else detection.score)
