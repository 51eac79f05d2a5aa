"""Boxes -> tracks -> events -> sinks, snapshots and clips: what edge_app does after each frame's
localization when tracking or events are on (edge_app/app.py calls `on_frame` and `close`).

Per frame, on the frame loop: the tracker and the event lifecycle (microseconds), a copy of the frame
when a track's best sighting improves, and enqueueing (sinks, clip frames). Everything that waits on
a disk or a network — MQTT, webhooks, the event log, clip encoding — runs on worker threads behind
bounded queues (edge_app/sinks.py, edge_app/clips.py). A snapshot is rendered and written when its
event ends (once per event): the best frame with the box, its class's CAM heat map and the
back-projected area.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from runtime.errors import ConfigError
from runtime.events import Event, EventBuilder, parse_zone
from runtime.localizer import FrameResult
from runtime.output_paths import write_bytes_atomic
from runtime.postprocess import LocalizerParams
from runtime.tracking import IouTracker

from .clips import ClipRecorder, Retention
from .overlay import render_snapshot
from .sinks import EventLogSink, MqttSettings, MqttSink, Sink, WebhookSink

__all__ = ["EventPipeline", "CAMERA_NAME"]

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # it goes into MQTT topics and file names
_SNAPSHOT_QUALITY = 90


class _Best:
    """A track's best sighting so far: the frame, its result and which detection it was."""

    __slots__ = ("image", "result", "index")

    def __init__(self, image: np.ndarray, result: FrameResult, index: int) -> None:
        self.image, self.result, self.index = image.copy(), result, index


class EventPipeline:
    def __init__(self, config: Any, classes: Sequence[str], params: LocalizerParams, *, fps: float,
                 log: Callable[[str], None]) -> None:
        """`config` is an AppConfig (edge_app/app.py): its tracking, event, MQTT and clip fields."""
        if not CAMERA_NAME.match(config.camera):
            raise ConfigError(f"--camera {config.camera!r}: use letters, digits, _ and - (it names MQTT topics and files)")
        self.classes, self.params, self.log = list(classes), params, log
        self.tracker = IouTracker(iou_threshold=config.track_iou, min_frames=config.track_min_frames,
                                  drop_frames=config.track_drop_frames, matching=config.track_matching)
        self.counted: Counter = Counter()
        self.builder = self.mqtt = self.recorder = None
        self.sinks: list[Sink] = []
        self.snapshots: Path | None = None
        self.snapshots_written = self.snapshots_failed = 0
        self._best: dict[int, _Best] = {}  # id(track) -> best sighting
        self._counts: dict[str, int] | None = None
        if not config.events_enabled:
            return
        self.builder = EventBuilder(classes, camera=config.camera, zones=[parse_zone(z) for z in config.zones],
                                    update_interval=config.update_interval)
        retention = Retention(config.retain_count, config.retain_days, config.retain_mb)
        self.retention = retention
        if config.mqtt:
            self.mqtt = MqttSink(MqttSettings(config.mqtt, prefix=config.mqtt_prefix, client_id=config.mqtt_client_id,
                                              qos=config.mqtt_qos, ca_file=config.mqtt_ca, cert_file=config.mqtt_cert,
                                              key_file=config.mqtt_key, insecure=config.mqtt_insecure),
                                 camera=config.camera, log=log)
            self.sinks.append(self.mqtt)
        self.sinks += [WebhookSink(url, log=log) for url in config.webhooks]
        if config.event_log:
            self.sinks.append(EventLogSink(config.event_log, log=log))
        if config.snapshots:
            self.snapshots = Path(config.snapshots)
            self.snapshots.mkdir(parents=True, exist_ok=True)
        if config.clips:
            self.recorder = ClipRecorder(config.clips, fps=fps, pre_seconds=config.clip_pre, post_seconds=config.clip_post,
                                         max_seconds=config.clip_max, retention=retention, log=log)
        if self.mqtt:
            self._publish_counts()

    def on_frame(self, image: np.ndarray, index: int, frame_time: float, result: FrameResult) -> list[int | None]:
        """Track this frame's detections and send the events they cause; returns each detection's track ID."""
        update = self.tracker.update(result.detections, index)
        for det_index, track in enumerate(update.tracks):
            if track.best_frame == index and self.snapshots is not None:
                self._best[id(track)] = _Best(image, result, det_index)
        if self._best:
            alive = {id(t) for t in self.tracker.tracks}
            for key in [k for k in self._best if k not in alive]:
                if key not in {id(t) for t in update.ended}:
                    del self._best[key]
        if self.recorder is not None:
            self.recorder.push(image, frame_time)
        if self.builder is not None:
            for event in self.builder.process(update, index, frame_time):
                self._dispatch(event, update.ended)
            if self.mqtt:
                self._publish_counts()
        return update.track_ids

    def close(self) -> dict[str, Any]:
        """End every open event (the run stopped), finish the clips, drain the sinks; the statistics."""
        ended = self.tracker.finish()
        if self.builder is not None:
            for event in self.builder.finish(ended):
                self._dispatch(event, ended)
            if self.mqtt:
                self._publish_counts()
        if self.recorder is not None:
            self.recorder.close()
        for sink in self.sinks:
            sink.close()
        stats: dict[str, Any] = {"events": dict(self.counted)}
        stats["sinks"] = {sink.name: sink.stats() for sink in self.sinks}
        if self.recorder is not None:
            stats["clips"] = self.recorder.stats()
        if self.snapshots is not None:
            stats["snapshots"] = {"written": self.snapshots_written, "failed": self.snapshots_failed}
        return stats

    def _dispatch(self, event: Event, ended) -> None:
        record = event.to_dict()
        if self.recorder is not None:
            if event.type == "new":
                self.recorder.start(event.id, event.frame_time)
            elif event.type == "end":
                self.recorder.stop(event.id, event.frame_time)
            record["clip"] = str(self.recorder.path_for(event.id))
        if event.type == "end" and self.snapshots is not None:
            track = next((t for t in ended if t.id == event.track_id), None)
            record["snapshot"] = self._write_snapshot(event, self._best.pop(id(track), None) if track else None)
        self.counted[event.type] += 1
        for sink in self.sinks:
            if sink is self.mqtt:
                self.mqtt.publish_event(record)
            else:
                sink.send(record)

    def _write_snapshot(self, event: Event, best: _Best | None) -> str | None:
        if best is None:
            return None
        path = self.snapshots / f"{event.id}.jpg"
        picture = render_snapshot(best.image, best.result, best.index, self.classes, self.params, event.track_id)
        try:
            ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, _SNAPSHOT_QUALITY])
            if not ok:
                raise OSError("OpenCV could not encode the snapshot")
            write_bytes_atomic(path, jpeg.tobytes())
        except OSError as error:
            self.snapshots_failed += 1
            self.log(f"edge_app: error: snapshot {path}: {error}")
            return None
        self.snapshots_written += 1
        self.retention.apply(self.snapshots, (".jpg",))
        return str(path)

    def _publish_counts(self) -> None:
        counts = self.builder.counts()
        if counts != self._counts:
            self.mqtt.publish_counts(counts)
            self._counts = counts
