"""Boxes -> tracks -> events -> sinks, snapshots and clips: what edge_app does after each frame's
localization when tracking or events are on (edge_app/app.py calls `on_frame` and `close`).

Per frame, on the frame loop: the tracker and the event lifecycle (tens of microseconds) and
enqueueing. Everything that renders, waits on a disk or a network runs on worker threads behind
bounded queues: the event dispatcher (`_Dispatcher`: renders and writes an ending event's snapshot —
the best frame with the box, its class's CAM heat map and the back-projected area, ~10 ms — then
hands the event to every sink, in order), the sinks (MQTT, webhooks, the event log;
edge_app/sinks.py) and the clip encoder (edge_app/clips.py).
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
from .sources import video_file

__all__ = ["EventPipeline", "CAMERA_NAME"]

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # it goes into MQTT topics and file names
_SNAPSHOT_QUALITY = 90


class _Best:
    """A track's best sighting so far: the frame, its result and which detection it was. The frame is
    kept by reference, not copied: every source hands out a new array per frame (OpenCV's `read()`
    allocates one) and nothing draws into it (overlays draw on a copy), and copying a 640x480 frame
    each time a confidence crept up cost 12% of edge_app's frame rate (docs/benchmarks.md)."""

    __slots__ = ("image", "result", "index")

    def __init__(self, image: np.ndarray, result: FrameResult, index: int) -> None:
        self.image, self.result, self.index = image, result, index


class _Dispatcher(Sink):
    """Events in order: the snapshot of an `end` first (so that the event can name a file that is
    there), then to every sink."""

    name = "events"

    def __init__(self, pipeline: "EventPipeline") -> None:
        self.pipeline = pipeline
        super().__init__(log=pipeline.log)

    def _deliver(self, message) -> bool:
        record, best = message
        if record["type"] == "end" and self.pipeline.snapshots is not None:
            record["snapshot"] = self.pipeline._write_snapshot(record, best)
        recorder = self.pipeline.recorder
        if record.get("clip") and recorder is not None and record["clip"] in recorder.failed_paths:
            record["clip"] = None  # that clip was lost (full disk): never name a file that is not there
        for sink in self.pipeline.sinks:
            sink.send_event(record)
        return True


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
        self.builder = self.mqtt = self.recorder = self.dispatcher = None
        self.sinks: list[Sink] = []
        self.snapshots: Path | None = None
        self.snapshots_written = self.snapshots_failed = 0
        self.snapshot_error: str | None = None
        self.event_log: EventLogSink | None = None
        self._best: dict[int, _Best] = {}  # id(track) -> best sighting
        self._clips: dict[str, str] = {}  # event id -> its clip (overlapping events share one)
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
                                              key_file=config.mqtt_key, insecure=config.mqtt_insecure,
                                              available_topic=config.mqtt_available),
                                 camera=config.camera, log=log)
            self.sinks.append(self.mqtt)
        self.sinks += [WebhookSink(url, log=log) for url in config.webhooks]
        if config.event_log:
            self.event_log = EventLogSink(config.event_log, log=log)
            self.sinks.append(self.event_log)
        if config.snapshots:
            self.snapshots = Path(config.snapshots)
            self.snapshots.mkdir(parents=True, exist_ok=True)
        if config.clips:
            # A video file's own packets where its frames reach the app as they are (not flipped).
            copy_from = video_file(config.source) if isinstance(config.source, str) and config.flip == "none" else None
            self.recorder = ClipRecorder(config.clips, fps=fps, pre_seconds=config.clip_pre, post_seconds=config.clip_post,
                                         max_seconds=config.clip_max, retention=retention, log=log, copy_from=copy_from,
                                         preset=config.video_preset)
        if self.mqtt:
            self._publish_counts()
        self.dispatcher = _Dispatcher(self)

    def on_frame(self, image: np.ndarray, index: int, frame_time: float, result: FrameResult) -> list[int | None]:
        """Track this frame's detections and send the events they cause; returns each detection's track ID."""
        update = self.tracker.update(result.detections, index)
        for det_index, track in enumerate(update.tracks):
            if track.best_frame == index and self.snapshots is not None:
                self._best[id(track)] = _Best(image, result, det_index)
        if len(self._best) > len(self.tracker.tracks):  # forget the candidates that never became tracks
            keep = {id(t) for t in self.tracker.tracks} | {id(t) for t in update.ended}
            self._best = {k: v for k, v in self._best.items() if k in keep}
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
        if self.recorder is not None:  # first: the last events then know whether their clips were written
            self.recorder.close()
        if self.builder is not None:
            for event in self.builder.finish(ended):
                self._dispatch(event, ended)
            if self.mqtt:
                self._publish_counts()
        if self.dispatcher is not None:
            self.dispatcher.close(timeout=10.0)  # the snapshots, then everything handed to the sinks
        for sink in self.sinks:
            sink.close()
        stats: dict[str, Any] = {"events": dict(self.counted)}
        stats["sinks"] = {sink.name: sink.stats() for sink in self.sinks}
        if self.dispatcher is not None and (self.dispatcher.dropped or self.dispatcher.failed):
            stats["sinks"]["events"] = self.dispatcher.stats()  # only when it lost some: it is internal
        if self.recorder is not None:
            stats["clips"] = self.recorder.stats()
        if self.snapshots is not None:
            stats["snapshots"] = {"written": self.snapshots_written, "failed": self.snapshots_failed}
        return stats

    def failed_outputs(self) -> dict[str, str]:
        """After `close`: the event files and folders that lost something, and why (the run's
        summary lists them as failed outputs, and edge_app exits 4). Network sinks are not here: a
        dead broker or endpoint is counted in the summary, not a failed run."""
        failed = {}
        if self.event_log is not None and self.event_log.failed:
            failed[self.event_log.path] = f"{self.event_log.failed} events not written: {self.event_log.last_error}"
        if self.snapshots is not None and self.snapshots_failed:
            failed[str(self.snapshots)] = f"{self.snapshots_failed} snapshots not written: {self.snapshot_error}"
        if self.recorder is not None and self.recorder.failed:
            failed[str(self.recorder.folder)] = f"{self.recorder.failed} clips not written: {self.recorder.last_error}"
        return failed

    def _dispatch(self, event: Event, ended) -> None:
        record = event.to_dict()
        if self.recorder is not None:
            if event.type == "new":
                self._clips[event.id] = str(self.recorder.start(event.id, event.frame_time))
            elif event.type == "end":
                self.recorder.stop(event.id, event.frame_time)
            record["clip"] = self._clips.pop(event.id, None) if event.type == "end" else self._clips.get(event.id)
        best = None
        if event.type == "end":
            track = next((t for t in ended if t.id == event.track_id), None)
            best = self._best.pop(id(track), None) if track else None
        self.counted[event.type] += 1
        self.dispatcher.send((record, best))

    def _write_snapshot(self, event: dict, best: _Best | None) -> str | None:
        """On the dispatcher's thread: the snapshot file's path, or None when it could not be written."""
        if best is None:
            return None
        path = self.snapshots / f"{event['id']}.jpg"
        picture = render_snapshot(best.image, best.result, best.index, self.classes, self.params, event["track_id"])
        try:
            ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, _SNAPSHOT_QUALITY])
            if not ok:
                raise OSError("OpenCV could not encode the snapshot")
            write_bytes_atomic(path, jpeg.tobytes())
        except OSError as error:
            self.snapshots_failed += 1
            self.snapshot_error = str(error)
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
