"""From tracks to events: a lifecycle per tracked object — `new`, `update` (throttled), `end` —
in the manner of Frigate's MQTT `events`, and zones (polygons in frame pixels) that an event says it
entered.

An event is one confirmed track (runtime/tracking.py). It carries what a consumer needs without the
video: the class, when it started and ended (wall clock, UNIX seconds), its best confidence, the box
and frame index of that best sighting (the snapshot's frame), the current box and the zones entered.
`update` is sent only when something a consumer cares about changed — a better confidence, a zone
entered or left — and at most every `update_interval` seconds per event, except that entering a zone
is sent at once. An object is in a zone when the bottom centre of its box is (where it stands, as
Frigate tests it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from .errors import ConfigError
from .tracking import Track, TrackerUpdate

__all__ = ["Zone", "parse_zone", "Event", "EventBuilder", "EVENT_TYPES", "DEFAULT_UPDATE_INTERVAL"]

EVENT_TYPES = ("new", "update", "end")
DEFAULT_UPDATE_INTERVAL = 5.0  # seconds between `update`s of one event


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]  # polygon corners in frame pixels

    def contains(self, x: float, y: float) -> bool:
        polygon = np.asarray(self.points, dtype=np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0


def parse_zone(value: Any) -> Zone:
    """`NAME:X,Y X,Y X,Y ...` (the command line) or {name: NAME, points: [[X, Y], ...]} (a config file)."""
    if isinstance(value, Zone):
        return value
    if isinstance(value, dict):
        name, points = value.get("name"), value.get("points")
    else:
        name, _, corners = str(value).partition(":")
        try:
            points = [tuple(float(v) for v in corner.split(",")) for corner in corners.split()]
        except ValueError:
            points = None
    if not name or not points or len(points) < 3 or any(len(p) != 2 for p in points):
        raise ConfigError(f"a zone is NAME:X,Y X,Y X,Y (three or more corners in frame pixels), got {value!r}")
    return Zone(str(name), tuple((float(x), float(y)) for x, y in points))


@dataclass
class Event:
    type: str  # new | update | end
    id: str  # the same for the whole lifecycle: CAMERA-START-TRACK
    camera: str
    label: str
    track_id: int
    start_time: float  # wall clock, UNIX seconds
    end_time: float | None
    frame: int  # the frame this message describes (for `end`: the last sighting)
    frame_time: float  # its source time (media time for files, wall clock for live sources)
    box: list[float]  # current box, frame pixels (x0, y0, x1, y1)
    confidence: float
    best_confidence: float
    best_box: list[float]
    best_frame: int  # where the snapshot comes from
    zones: list[str] = field(default_factory=list)  # entered so far
    current_zones: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["box"] = [round(v, 2) for v in self.box]
        out["best_box"] = [round(v, 2) for v in self.best_box]
        out["confidence"], out["best_confidence"] = round(self.confidence, 6), round(self.best_confidence, 6)
        return out


@dataclass
class _Open:
    event_id: str
    start_time: float
    last_sent: float
    sent_confidence: float
    zones: list[str]
    current: list[str]
    last_seen: float  # frame time of the last sighting: where an `end` says the object was last


class EventBuilder:
    """`process(update, frame, frame_time)` per frame -> the events it causes; `finish(tracks)` at the end."""

    def __init__(self, classes: Sequence[str], *, camera: str = "camera", zones: Sequence[Zone] = (),
                 update_interval: float = DEFAULT_UPDATE_INTERVAL, clock: Callable[[], float] = time.time) -> None:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ConfigError(f"zone names must be distinct, got {names}")
        self.classes, self.camera, self.zones = list(classes), camera, list(zones)
        self.update_interval, self.clock = update_interval, clock
        self._open: dict[int, _Open] = {}
        self._labels: dict[int, str] = {}

    def counts(self) -> dict[str, int]:
        """Objects of each class being tracked now (every class, 0 included)."""
        counts = dict.fromkeys(self.classes, 0)
        for track_id in self._open:
            counts[self._labels[track_id]] += 1
        return counts

    def process(self, update: TrackerUpdate, frame: int, frame_time: float) -> list[Event]:
        now = self.clock()
        events = []
        for track in update.confirmed:
            zones = self._zones_of(track)
            self._open[track.id] = _Open(f"{self.camera}-{now:.3f}-{track.id}", now, now, track.best_confidence,
                                         list(zones), zones, frame_time)
            self._labels[track.id] = self.classes[track.class_index]
            events.append(self._event("new", track, frame, frame_time))
        confirmed_now = {t.id for t in update.confirmed}
        for track in update.active:
            if track.id in confirmed_now or track.last_frame != frame:
                continue
            state = self._open[track.id]
            state.last_seen = frame_time
            current = self._zones_of(track)
            entered = [z for z in current if z not in state.zones]
            state.zones += entered
            changed = current != state.current or track.best_confidence > state.sent_confidence
            state.current = current
            if entered or (changed and now - state.last_sent >= self.update_interval):
                state.last_sent, state.sent_confidence = now, track.best_confidence
                events.append(self._event("update", track, frame, frame_time))
        for track in update.ended:
            events.append(self._end(track))
        return events

    def finish(self, tracks: Sequence[Track]) -> list[Event]:
        """The `end` of every event still open (the source ended, the app stops)."""
        return [self._end(track) for track in tracks if track.id in self._open]

    def _end(self, track: Track) -> Event:
        event = self._event("end", track, track.last_frame, self._open[track.id].last_seen)
        event.end_time = self.clock()
        del self._open[track.id]
        self._labels.pop(track.id, None)
        return event

    def _zones_of(self, track: Track) -> list[str]:
        x0, _, x1, y1 = track.box
        return [z.name for z in self.zones if z.contains((x0 + x1) / 2, y1)]

    def _event(self, kind: str, track: Track, frame: int, frame_time: float) -> Event:
        state = self._open[track.id]
        return Event(type=kind, id=state.event_id, camera=self.camera, label=self.classes[track.class_index],
                     track_id=track.id, start_time=round(state.start_time, 3), end_time=None, frame=frame,
                     frame_time=round(frame_time, 4), box=list(track.box), confidence=track.confidence,
                     best_confidence=track.best_confidence, best_box=list(track.best_box), best_frame=track.best_frame,
                     zones=list(state.zones), current_zones=list(state.current))
