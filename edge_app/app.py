"""The camera loop: source -> Localizer -> overlay -> outputs + JSON lines, with statistics.

`EdgeApp(model, AppConfig(source=..., outputs=[...])).run()` is the whole application; the CLI only parses arguments.
Ctrl-C and SIGTERM stop the loop after the current frame, and every output is closed in `finally`,
so nothing already produced is lost. Per-frame state is never accumulated: memory stays flat.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from runtime.cli import number
from runtime.config_cli import option
from runtime.confidence import DEFAULT_MIN_CONFIDENCE, DEFAULT_OVERLAP_IOU
from runtime.errors import ConfigError, ServerLost
from runtime.events import DEFAULT_UPDATE_INTERVAL, parse_zone
from runtime.localizer import Localizer
from runtime.output_paths import writable_file, writable_folder
from runtime.preprocess import RESIZE_MODES
from runtime.tracking import DEFAULT_DROP_FRAMES, DEFAULT_MIN_FRAMES, DEFAULT_TRACK_IOU, MATCHINGS

from .clips import DEFAULT_MAX_SECONDS, DEFAULT_POST_SECONDS, DEFAULT_PRE_SECONDS
from .camera_outputs import CameraOutputs
from .outputs import refuse_clashing_paths, writable_frames_folder
from .overlay import OVERLAYS
from .sources import DEFAULT_STALL_TIMEOUT, FLIPS, SourceLost, open_source
from .video_output import DEFAULT_X264_PRESET, X264_PRESETS

__all__ = ["EdgeApp", "AppConfig", "RunSummary", "MODEL_SERVER_LOST"]

STAGES = ("capture", "preprocess", "inference", "postprocess", "output")
MODEL_SERVER_LOST = "model server lost"  # stopped_by when a triton:// model's server is gone (exit 3)


def zone_text(value) -> str:
    """A zone as NAME:X,Y X,Y X,Y, from the command line or {name, points} in a config file; checked."""
    zone = parse_zone(value)
    return f"{zone.name}:" + " ".join(f"{x:g},{y:g}" for x, y in zone.points)


@dataclass
class AppConfig:
    """What the app reads, how it localizes and where results go; edge_app's options are generated
    from these fields (runtime/config_cli.py). 0 for --conf, --overlap-iou and --reconnect-timeout
    means "off", here as on the command line."""

    source: str | None = option(None, "input URI (edge_app --help lists them); repeat it for several cameras",
                                action="append", metavar="URI")
    outputs: list[str] = option(help="output URI, repeatable (edge_app --help lists them)", factory=list, flags=("--output",),
                                action="append", metavar="URI")
    json: str | None = option(None, "JSON lines per frame to this file, or - for stdout", metavar="FILE")
    overlay: str = option("boxes", "draw boxes only, or also the CAM heat map / back-projected area", choices=OVERLAYS)
    width: int | None = option(None, "capture width (cameras)", type=number(int, minimum=1))
    height: int | None = option(None, "capture height (cameras)", type=number(int, minimum=1))
    fps: int | None = option(None, "capture frame rate (cameras)", type=number(int, minimum=1))
    flip: str = option("none", "", choices=FLIPS)
    resize_mode: str | None = option(None, "how frames fit the network (default: the model's)", flags=("--resize",),
                                     choices=RESIZE_MODES)
    min_confidence: float | None = option(
        DEFAULT_MIN_CONFIDENCE, "keep boxes whose confidence, P(present) of the instance from the model's own output "
        "layer, is at least this, of classes whose P(present) in the frame is too (0 keeps every peak above t_c, "
        "the paper's rule)", flags=("--conf",),
        type=number(float, minimum=0), metavar="C")
    overlap_iou: float | None = option(DEFAULT_OVERLAP_IOU, "of boxes of different classes overlapping by this IoU, "
                                       "keep the most confident (0 keeps all)", type=number(float, minimum=0),
                                       metavar="IOU")
    min_score: float | None = option(None, "also hide detections whose peak CAM value is below this", type=number(float))
    max_frames: int | None = option(None, "stop after this many frames", type=number(int, minimum=0))
    http_host: str = option("127.0.0.1", "bind address for http:// outputs given without a host")
    reconnect_timeout: float | None = option(30.0, "give up on a lost live source after this many seconds (0: never)",
                                             type=number(float, minimum=0))
    stall_timeout: float = option(DEFAULT_STALL_TIMEOUT, "seconds an open stream may send nothing before it counts as "
                                  "lost and is reconnected", type=number(float, above=0))
    summary_every: float = option(10.0, "seconds between log summaries", type=number(float, above=0))
    realtime: bool = option(False, "play video files at their frame rate, dropping what there is no time for, as a "
                            "live camera would (rehearsals, benchmarks)")
    output_fps: float | None = option(None, "frame rate of video files from live sources (default: the source's)",
                                      type=number(float, above=0))
    video_preset: str = option(DEFAULT_X264_PRESET, "x264 preset of MP4 outputs and clips: slower ones make smaller "
                               "files for more CPU", choices=X264_PRESETS)
    # tracking (runtime/tracking.py)
    track: bool = option(True, "no tracking (JSON lines then carry no track_id; events need tracking)",
                         switch="--no-track", group="tracking")
    track_iou: float = option(DEFAULT_TRACK_IOU, "a box continues the track of its class it overlaps by this IoU",
                              type=number(float, above=0), group="tracking")
    track_min_frames: int = option(DEFAULT_MIN_FRAMES, "frames in a row before a track gets an ID (filters "
                                   "one-frame false positives)", type=number(int, minimum=1), group="tracking")
    track_drop_frames: int = option(DEFAULT_DROP_FRAMES, "frames without a match before a track ends",
                                    type=number(int, minimum=0), group="tracking")
    track_matching: str = option("greedy", "greedy (jetson-inference's) or hungarian (needs scipy)", choices=MATCHINGS,
                                 group="tracking")
    # events (runtime/events.py, edge_app/sinks.py)
    camera: str = option("camera", "this camera's name in events, MQTT topics and file names", group="events")
    zones: list[str] = option(help="a zone, NAME:X,Y X,Y X,Y (frame pixels; repeatable): events say which they "
                              "entered", factory=list, flags=("--zone",), action="append", type=zone_text,
                              metavar="ZONE", group="events")
    update_interval: float = option(DEFAULT_UPDATE_INTERVAL, "seconds between an event's update messages",
                                    type=number(float, minimum=0), group="events")
    event_log: str | None = option(None, "the events as JSON lines in this file", metavar="FILE", group="events")
    webhooks: list[str] = option(help="POST each event's JSON to this URL (repeatable; retried, never blocking)",
                                 factory=list, flags=("--webhook",), action="append", metavar="URL", group="events")
    mqtt: str | None = option(None, "publish events to this broker: mqtt://[USER:PASS@]HOST[:PORT], mqtts:// for TLS",
                              metavar="URL", group="MQTT")
    mqtt_prefix: str = option("spamcam", "topic prefix: PREFIX/events, PREFIX/CAMERA/CLASS, PREFIX/available",
                              group="MQTT")
    mqtt_qos: int = option(1, "", choices=[0, 1, 2], type=number(int, minimum=0), group="MQTT")
    mqtt_client_id: str = option("", "client ID (default: spamcam-CAMERA)", group="MQTT")
    mqtt_available: str = option("", "the retained online / offline topic, with the last will (default: "
                                 "PREFIX/available; with several cameras PREFIX/CAMERA/available, one per camera)",
                                 metavar="TOPIC", group="MQTT")
    mqtt_ca: str | None = option(None, "TLS: the broker's CA certificate (default: the system's)", metavar="FILE",
                                 group="MQTT")
    mqtt_cert: str | None = option(None, "TLS: client certificate", metavar="FILE", group="MQTT")
    mqtt_key: str | None = option(None, "TLS: client key", metavar="FILE", group="MQTT")
    mqtt_insecure: bool = option(False, "TLS without checking the broker's certificate (testing only)", group="MQTT")
    snapshots: str | None = option(None, "write each event's best frame here as JPEG: box, CAM heat map and "
                                   "back-projected area", metavar="DIR", group="snapshots and clips")
    clips: str | None = option(None, "write H.264 MP4 clips of the events here (events that overlap share one)",
                               metavar="DIR",
                               group="snapshots and clips")
    clip_pre: float = option(DEFAULT_PRE_SECONDS, "seconds of video before the event", type=number(float, minimum=0),
                             group="snapshots and clips")
    clip_post: float = option(DEFAULT_POST_SECONDS, "seconds of video after the event", type=number(float, minimum=0),
                              group="snapshots and clips")
    clip_max: float = option(DEFAULT_MAX_SECONDS, "longest clip, seconds", type=number(float, above=0),
                             group="snapshots and clips")
    retain_count: int = option(0, "keep at most this many snapshots and clips each (0: no limit)",
                               type=number(int, minimum=0), group="snapshots and clips")
    retain_days: float = option(0.0, "delete snapshots and clips older than this (0: never)",
                                type=number(float, minimum=0), group="snapshots and clips")
    retain_mb: float = option(0.0, "keep each folder under this size (0: no limit)", type=number(float, minimum=0),
                              group="snapshots and clips")

    @property
    def events_enabled(self) -> bool:
        return bool(self.mqtt or self.webhooks or self.event_outputs())

    def event_outputs(self) -> list[tuple[str, str]]:
        """(option, path) of the event files and folders asked for: the event log, snapshots, clips."""
        return [(flag, path) for flag, path in (("--event-log", self.event_log), ("--snapshots", self.snapshots),
                                                ("--clips", self.clips)) if path]

    def check_writable(self) -> None:
        """Every file and folder this camera writes can be written (folders are made): checked before
        the source or any output opens, so that a bad one leaves nothing made for nothing."""
        files = [("--json", self.json if self.json != "-" else None), ("--event-log", self.event_log)]
        folders = [("--snapshots", self.snapshots), ("--clips", self.clips)]
        folders += [("--output", Path(uri).parent) for uri in self.outputs if "://" not in uri and Path(uri).suffix]
        for flag, path in files:
            if path:
                writable_file(path, flag)
        for flag, path in folders:
            if path:
                writable_folder(path, flag, create=True)
        for uri in self.outputs:
            if "://" not in uri and not Path(uri).suffix:  # a folder of frames
                writable_frames_folder(uri)

    def __post_init__(self) -> None:
        if isinstance(self.source, (list, tuple)):  # from the repeatable --source; several: camera_configs
            self.source = (self.source[0] if len(self.source) == 1 else list(self.source)) if self.source else None
        self.outputs = list(self.outputs or [])
        self.min_confidence = self.min_confidence or None
        self.overlap_iou = self.overlap_iou or None
        self.reconnect_timeout = self.reconnect_timeout or None
        self.zones, self.webhooks = list(self.zones or []), list(self.webhooks or [])
        if self.events_enabled and not self.track:
            raise ConfigError("events (--mqtt, --webhook, --event-log, --snapshots, --clips) need tracking: drop --no-track")


@dataclass
class RunSummary:
    frames: int = 0
    detections: int = 0
    dropped: int = 0
    bad: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # mean per frame
    stopped_by: str = "end of source"
    outputs: list[str] = field(default_factory=list)
    failed_outputs: dict[str, str] = field(default_factory=dict)  # output -> why it stopped being written
    events: dict = field(default_factory=dict)  # events sent by type, and each sink's, clips' and snapshots' counts

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"frames": self.frames, "fps": round(self.fps, 2), "detections": self.detections,
                "dropped": self.dropped, "bad_frames": self.bad, "reconnects": self.reconnects,
                "seconds": round(self.seconds, 3), "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()},
                "stopped_by": self.stopped_by, "outputs": self.outputs, "failed_outputs": self.failed_outputs,
                **({"events": self.events} if self.events else {})}


def install_stop_signals(stop: Callable[[str], None]) -> dict:
    """Ctrl-C and SIGTERM call `stop(signal name)` (the loop ends after the current frame and closes
    every output); only on the main thread, where Python allows handlers. Returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda n, _f: stop(signal.Signals(n).name))
    return previous


def restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class _Meter:
    """Running sums and an exponential moving average of FPS; constant memory."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(STAGES, 0.0)
        self.count = 0
        self.fps = 0.0
        self._last = None

    def add(self, stages: dict[str, float]) -> None:
        for key in STAGES:
            self.sums[key] += stages.get(key, 0.0)
        self.count += 1
        now = time.perf_counter()
        if self._last is not None:
            instant = 1.0 / max(now - self._last, 1e-6)
            self.fps = instant if self.fps == 0 else 0.9 * self.fps + 0.1 * instant
        self._last = now

    def means(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else dict.fromkeys(STAGES, 0.0)


class EdgeApp:
    def __init__(self, model: str | Path | Localizer, config: AppConfig, *, log: Callable[[str], None] | None = None,
                 **backend_options) -> None:
        if config.overlay not in OVERLAYS:
            raise ConfigError(f"overlay must be one of {OVERLAYS}, got {config.overlay!r}")
        self.config = config
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.localizer = model if isinstance(model, Localizer) else Localizer(
            model, resize_mode=config.resize_mode, min_score=config.min_score, min_confidence=config.min_confidence,
            overlap_iou=config.overlap_iou, **backend_options)
        self._stop = threading.Event()
        self.stopped_by = "end of source"

    def stop(self, reason: str = "stop()") -> None:
        self.stopped_by = reason
        self._stop.set()

    def _maybe_summarise(self, summary: RunSummary, meter: _Meter, source, last: float) -> float:
        """The periodic log line, also while a live source delivers nothing (a silent app looks dead)."""
        now = time.perf_counter()
        if now - last < self.config.summary_every:
            return last
        means = meter.means()
        self.log(f"edge_app: {summary.frames} frames, {meter.fps:.1f} FPS; ms per frame: "
                 + ", ".join(f"{k} {means[k]:.1f}" for k in STAGES)
                 + f"; dropped {source.stats.dropped}, bad {source.stats.bad + summary.bad}, "
                 f"reconnects {source.stats.reconnects}")
        return now

    def run(self) -> RunSummary:
        config = self.config
        refuse_clashing_paths(config.source, config.outputs, config.json, config.event_outputs())
        config.check_writable()
        if not config.source or isinstance(config.source, list):
            raise ConfigError("EdgeApp runs one camera: give one source (several: MultiCameraApp, with "
                              "edge_app.camera_config.camera_configs)")
        source = open_source(config.source, width=config.width, height=config.height, fps=config.fps, flip=config.flip,
                             give_up_after=config.reconnect_timeout, log=self.log, stall_timeout=config.stall_timeout,
                             realtime=config.realtime)
        delivery = None
        previous = install_stop_signals(self.stop)
        summary = RunSummary()
        meter = _Meter()
        started = time.perf_counter()
        last_summary = started
        try:
            delivery = CameraOutputs(config, self.localizer, fps=config.output_fps or source.fps or 30.0, log=self.log,
                                     on_quit=lambda: self.stop("window"))
            self.log(f"edge_app: {config.source} -> {', '.join(config.outputs) or 'no video output'}"
                     f"{'; JSON lines to ' + config.json if config.json else ''}; model {self.localizer.info.backbone} "
                     f"on {self.localizer.backend.name}")
            while not self._stop.is_set():
                if config.max_frames is not None and summary.frames >= config.max_frames:
                    self.stopped_by = "max frames"
                    break
                t0 = time.perf_counter()
                try:
                    frame = source.read(0.5)
                except SourceLost as error:
                    self.log(f"edge_app: {error}")
                    self.stopped_by = "source lost"
                    break
                if frame is None:
                    if source.live and not source.finished:
                        last_summary = self._maybe_summarise(summary, meter, source, last_summary)
                        continue  # nothing new yet: keep waiting (and keep answering Ctrl-C), saying so
                    break
                capture_ms = (time.perf_counter() - t0) * 1000
                try:
                    result = self.localizer(frame.image)
                except ServerLost as error:  # a triton:// model's server went away and did not come back
                    self.log(f"edge_app: {error}")
                    self.stopped_by = MODEL_SERVER_LOST
                    break
                except ValueError as error:  # e.g. an empty or odd-shaped frame: skip it, count it
                    summary.bad += 1
                    self.log(f"edge_app: skipped frame {frame.index}: {error}")
                    continue
                t1 = time.perf_counter()
                stages = {"capture": capture_ms, **result.timings_ms}
                status = (f"{meter.fps:5.1f} FPS | cap {capture_ms:.1f} pre {stages['preprocess']:.1f} "
                          f"inf {stages['inference']:.1f} post {stages['postprocess']:.1f} ms")
                delivery.deliver(frame, result, status)
                if not delivery.alive:
                    self.stopped_by = "every output failed"
                    break
                stages["output"] = (time.perf_counter() - t1) * 1000
                meter.add(stages)
                summary.frames += 1
                summary.detections += len(result.detections)
                last_summary = self._maybe_summarise(summary, meter, source, last_summary)
        finally:
            summary.seconds = time.perf_counter() - started
            if delivery is not None:
                delivery.close()
                summary.events = delivery.events
                summary.failed_outputs.update(delivery.failed)
            source.close()
            restore_signals(previous)
        summary.stage_ms = meter.means()
        summary.dropped = source.stats.dropped
        summary.bad += source.stats.bad
        summary.reconnects = source.stats.reconnects
        summary.stopped_by = self.stopped_by
        summary.outputs = delivery.written() if delivery is not None else []
        self.log(f"edge_app: done ({summary.stopped_by}): {summary.frames} frames in {summary.seconds:.1f}s "
                 f"({summary.fps:.1f} FPS), {summary.detections} detections, {summary.dropped} dropped, "
                 f"{summary.bad} bad, {summary.reconnects} reconnects")
        return summary
