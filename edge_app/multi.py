"""Many cameras, one model: readers, a batching inference stage and per-camera workers, pipelined.

    reader thread per camera (decoding, pre-processing) -> [its input queue] -> batcher (one inference
    call for frames of several cameras) -> [each camera's work queue] -> worker thread per camera
    (post-processing, tracking, events, drawing, encoding, JSON lines)

Why this shape: on an edge device the accelerator (or ONNX Runtime's own threads) runs while Python
decodes, post-processes and encodes for the other cameras, and one batched call costs less than one
call per camera. A camera whose frames arrive faster than they are processed loses its *oldest* frames,
counted per stage; a camera that delivers nothing holds the others back at most `max_wait_ms`.
Files are read frame by frame and never dropped (their readers wait instead), unless `realtime`
plays them at their frame rate like a live camera.

`MultiCameraApp(model, [AppConfig, ...]).run()` is the Python API; edge_app's CLI builds the configs
from `--cameras FILE` or repeated `--source`.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from runtime.errors import ConfigError, ServerLost, WriteError
from runtime.localizer import Localizer, PendingResult

from .app import MODEL_SERVER_LOST, RunSummary, install_stop_signals, restore_signals
from .camera_stream import PIPELINE_STAGES, CameraStream, Captured
from .metrics import AppMetrics
from .outputs import refuse_clashing_paths
from .sources import SourceError, SourceLost

__all__ = ["MultiCameraApp", "MultiRunSummary", "BatchSettings", "PIPELINE_STAGES"]

DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 10.0
DEFAULT_INFERENCE_THREADS = 0  # auto: ONNX Runtime one per core (at most one per camera); TensorRT 1


@dataclass(frozen=True)
class BatchSettings:
    """How frames of several cameras share an inference call."""

    max_batch: int = DEFAULT_MAX_BATCH  # frames per call, at most
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS  # after the first frame, how long to wait for the others
    queue_frames: int = 2  # frames each camera may have waiting between two stages
    # Inference calls running at once (one session run concurrently; the cameras split between them).
    # On a CPU, concurrent single-threaded runs beat one batched run on all cores (docs/benchmarks.md);
    # a TensorRT execution context is used by one thread at a time, so there batching is the lever.
    inference_threads: int = DEFAULT_INFERENCE_THREADS

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.queue_frames < 1 or self.inference_threads < 0 or not self.max_wait_ms >= 0:
            raise ConfigError(f"batching needs max_batch >= 1, queue_frames >= 1, max_wait_ms >= 0; got {self}")


@dataclass
class MultiRunSummary:
    cameras: dict[str, RunSummary] = field(default_factory=dict)
    seconds: float = 0.0
    batches: int = 0
    batched_frames: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # camera -> p50 / p99, capture to output
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # camera -> stage -> frames
    stopped_by: str = "end of sources"

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.cameras.values())

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed_outputs(self) -> dict[str, str]:
        return {uri: why for s in self.cameras.values() for uri, why in s.failed_outputs.items()}

    @property
    def outputs(self) -> list[str]:
        return [o for s in self.cameras.values() for o in s.outputs]

    @property
    def lost_sources(self) -> list[str]:
        return [name for name, s in self.cameras.items() if s.stopped_by == "source lost"]

    def to_dict(self) -> dict:
        return {"frames": self.frames, "fps": round(self.fps, 2), "seconds": round(self.seconds, 3),
                "batches": self.batches,
                "mean_batch": round(self.batched_frames / self.batches, 2) if self.batches else 0.0,
                "stopped_by": self.stopped_by, "outputs": self.outputs, "failed_outputs": self.failed_outputs,
                "cameras": {name: {**s.to_dict(), "latency_ms": self.latency_ms.get(name, {}),
                                   "dropped_by_stage": self.dropped.get(name, {})}
                            for name, s in self.cameras.items()}}


class MultiCameraApp:
    """Several cameras through one model. `configs`: one AppConfig per camera, distinct `camera` names."""

    def __init__(self, model: str | Path | Localizer, configs: Sequence, *, batch: BatchSettings = BatchSettings(),
                 web: str | None = None, log: Callable[[str], None] | None = None, **backend_options) -> None:
        configs = list(configs)
        if not configs:
            raise ConfigError("no cameras: give at least one source")
        names = [c.camera for c in configs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"camera names must differ (they name files, topics and the web page's tiles); "
                              f"repeated: {', '.join(repeated)}")
        self.configs, self.web_address = configs, web
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        onnx = (model.backend.name == "onnxruntime" if isinstance(model, Localizer)
                else str(model).endswith(".onnx"))
        if batch.inference_threads > 1 and not onnx:
            raise ConfigError("several inference threads share one ONNX Runtime session; a TensorRT engine's "
                              "execution context is one thread's (batching is what a GPU gains from): use 1")
        batchers = min(batch.inference_threads or ((os.cpu_count() or 1) if onnx else 1), len(configs))
        if batchers > 1 and "threads" not in backend_options and not isinstance(model, Localizer):
            # Concurrent runs of one session: split the cores between them instead of each taking all.
            backend_options["threads"] = max(1, (os.cpu_count() or 1) // batchers)
        # The shared Localizer keeps every box with its confidence; each camera gates with its own policy.
        self.localizer = model if isinstance(model, Localizer) else Localizer(
            model, resize_mode=configs[0].resize_mode, min_score=configs[0].min_score, min_confidence=None,
            overlap_iou=None, **backend_options)
        limit = getattr(self.localizer.backend, "max_batch", 0)  # an engine's profile, a Triton model's config
        if limit and batch.max_batch > limit:
            batch = replace(batch, max_batch=limit)
        self.batch = batch
        self.cameras = [CameraStream(c, self.localizer, batch.queue_frames, self._camera_log(c.camera)) for c in configs]
        self.groups = [self.cameras[i::batchers] for i in range(batchers)]  # camera -> its one batcher
        self._count_lock = threading.Lock()
        self.metrics = AppMetrics(self)
        self.web = None
        self._stop = threading.Event()
        self._arrivals = threading.Condition()
        self.stopped_by = "end of sources"
        self.batches = 0
        self.batched_frames = 0

    def _camera_log(self, name: str) -> Callable[[str], None]:
        def log(message: str) -> None:
            self.log(message.replace("edge_app: ", f"edge_app: [{name}] ", 1))
        return log

    def stop(self, reason: str = "stop()") -> None:
        self.stopped_by = reason
        self._stop.set()
        for camera in self.cameras:
            camera.halt.set()
        with self._arrivals:
            self._arrivals.notify_all()

    def state(self) -> dict:
        """Everything the web page shows, as JSON-ready data."""
        return {"model": self.localizer.info.backbone, "backend": self.localizer.backend.name,
                "classes": self.localizer.classes, "batches": self.batches,
                "mean_batch": round(self.batched_frames / self.batches, 2) if self.batches else 0.0,
                "cameras": [camera.state() for camera in self.cameras]}

    # --- the stages ---------------------------------------------------------------------------
    def _read(self, camera: CameraStream) -> None:
        """Reader thread: the source's frames into the camera's input queue."""
        limit = camera.config.max_frames
        try:
            if camera.source is None:  # a network stream, opened here: it may be waited for
                try:
                    camera.open()
                except SourceError as error:
                    camera.log(f"edge_app: {error}; the other cameras go on")
                    camera.stopped_by = "source lost"
                    return
            while not camera.halt.is_set():
                if limit is not None and camera.read_frames >= limit:
                    camera.stopped_by = "max frames"
                    break
                t0 = time.perf_counter()
                try:
                    frame = camera.source.read(0.5)
                except SourceLost as error:
                    camera.log(f"edge_app: {error}")
                    camera.stopped_by = "source lost"
                    break
                if frame is None:
                    if camera.live and not camera.source.finished:
                        continue
                    break
                now = time.perf_counter()
                camera.read_frames += 1
                # Latency counts from the frame's arrival: a live frame's timestamp is when the source got it.
                arrived = now - max(0.0, time.time() - frame.timestamp) if camera.live else now
                try:
                    prepared = self.localizer.prepare(frame.image)  # here, in parallel with the other cameras
                except ValueError as error:  # an empty or odd-shaped frame: skip it, count it
                    camera.summary.bad += 1
                    camera.log(f"edge_app: skipped frame {frame.index}: {error}")
                    continue
                camera.inputs.put(Captured(frame, arrived, (now - t0) * 1000, prepared), block=not camera.live,
                                  stop=camera.halt, notify=self._arrivals)
        except Exception as error:  # a broken source ends this camera, not the app
            camera.log(f"edge_app: reading failed: {error}")
            camera.stopped_by = f"read error: {error}"
        finally:
            camera.reading = False
            with self._arrivals:
                self._arrivals.notify_all()

    def _collect(self, group: list[CameraStream], start: int) -> list[tuple[CameraStream, Captured]]:
        """Up to max_batch frames of the group's cameras, one per camera, from camera `start` on; after
        the first frame, wait at most max_wait_ms for the others."""
        deadline = None
        taken: list[tuple[CameraStream, Captured]] = []
        order = group[start:] + group[:start]
        while not self._stop.is_set():
            progress = False
            for camera in order:
                if len(taken) >= self.batch.max_batch:
                    break
                if any(c is camera for c, _ in taken):
                    continue
                try:
                    taken.append((camera, camera.inputs.get_nowait(claim=True)))
                    progress = True
                except queue.Empty:
                    pass
            waiting_for = [c for c in order if c.reading and not any(c is t for t, _ in taken)]
            if len(taken) >= self.batch.max_batch or (taken and not waiting_for):
                break
            if not taken and not any(c.reading or len(c.inputs) for c in group):
                break  # every source has ended and nothing is left
            now = time.perf_counter()
            if taken and deadline is None:
                deadline = now + self.batch.max_wait_ms / 1000
            if deadline is not None and now >= deadline:
                break
            if not progress:
                with self._arrivals:
                    self._arrivals.wait(0.5 if deadline is None else max(deadline - now, 0.0))
        return taken

    def _infer(self, group: list[CameraStream]) -> None:
        """A batcher: frames of the group's cameras, one inference call. Each camera belongs to one
        batcher, so its frames stay in order."""
        start = 0
        while True:
            taken = self._collect(group, start)
            if not taken:
                if self._stop.is_set() or not any(c.reading or len(c.inputs) for c in group):
                    return
                continue
            start = (start + 1) % len(group)
            now = time.perf_counter()
            pending = self.localizer.infer_prepared([captured.prepared for _, captured in taken])
            with self._count_lock:
                self.batches += 1
                self.batched_frames += len(taken)
            self.metrics.batch(len(taken))
            for (camera, captured), result in zip(taken, pending):
                result.timings_ms["wait"] = (now - captured.captured) * 1000 - captured.prepared.preprocess_ms
                if not camera.halt.is_set() or self._stop.is_set():  # a dead camera's frames go nowhere
                    camera.work.put((captured, result), block=not camera.live, stop=camera.halt)
                camera.inputs.release()

    def _deliver(self, camera: CameraStream) -> None:
        """Worker thread: post-processing, tracking, events, drawing, encoding, JSON lines. When the
        camera has ended and its last frame is out, it closes the camera's outputs at once: open
        events end, clips finish, its MQTT availability goes offline, while the other cameras go on."""
        try:
            self._deliver_until_done(camera)
        finally:
            if camera.outputs is not None:
                camera.outputs.close()

    def _deliver_until_done(self, camera: CameraStream) -> None:
        while True:
            try:
                captured, pending = camera.work.get(0.2)
            except queue.Empty:
                # Ended: nothing left to read, nothing waiting or being inferred (a batcher passes a
                # frame on before releasing it, so the work queue is checked after `drained`).
                if not camera.reading and (camera.inputs.drained() or self._inference_done.is_set()) \
                        and len(camera.work) == 0:
                    return
                continue
            try:
                self._deliver_one(camera, captured, pending)
            except Exception as error:  # report, count, go on: one bad frame must not end a camera
                camera.summary.bad += 1
                camera.log(f"edge_app: frame {captured.frame.index} failed in its output stage: {error}")
            if not camera.outputs.alive:
                camera.stopped_by = "every output failed"
                camera.log("edge_app: every output of this camera failed; it stops")
                camera.halt.set()
                return

    def _deliver_one(self, camera: CameraStream, captured: Captured, pending: PendingResult) -> None:
        result = self.localizer.finish(pending, camera.policy)
        t1 = time.perf_counter()
        stages = {"capture": captured.capture_ms, **result.timings_ms}
        status = (f"{camera.name} {camera.fps:5.1f} FPS | inf {stages['inference']:.1f} "
                  f"post {stages['postprocess']:.1f} ms")
        track_ids, annotated = camera.outputs.deliver(captured.frame, result, status, camera=camera.name)
        done = time.perf_counter()
        stages["output"] = (done - t1) * 1000
        for key in PIPELINE_STAGES:
            camera.stage_sums[key] += stages.get(key, 0.0)
        latency = (done - captured.captured) * 1000
        camera.latencies.append(latency)
        camera.summary.frames += 1
        camera.summary.detections += len(result.detections)
        if camera._last_done is not None:
            instant = 1.0 / max(done - camera._last_done, 1e-6)
            camera.fps = instant if camera.fps == 0 else 0.9 * camera.fps + 0.1 * instant
        camera._last_done = done
        self.metrics.frame(camera.name, stages, latency, len(result.detections))
        if self.web is not None:
            with camera.lock:
                camera.latest = {"frame": captured.frame.index, "timestamp": round(captured.frame.timestamp, 3),
                                 "detections": [d.to_dict(self.localizer.classes) for d in result.detections]}
            self.web.offer_preview(camera, captured.frame, result, annotated, track_ids)

    # --- running ------------------------------------------------------------------------------
    def _check_outputs(self) -> None:
        for camera in self.cameras:
            config = camera.config
            refuse_clashing_paths(config.source, config.outputs, config.json, config.event_outputs())
            # Every camera's files are checked before any camera opens one: a camera whose folder is
            # read-only must not leave the others' files made for nothing.
            try:
                config.check_writable()
            except WriteError as error:
                raise WriteError(f"camera {camera.name}: {error}") from None
        asked = [(c.camera, p) for c in self.configs
                 for p in [*c.outputs, *([c.json] if c.json and c.json != "-" else []), *(p for _, p in c.event_outputs())]
                 if not str(p).startswith(("http://", "mjpeg://", "display://"))]
        paths = [str(Path(p).expanduser().resolve()) for _, p in asked]
        shared = sorted({p for p in paths if paths.count(p) > 1})
        if shared:
            raise ConfigError(f"two cameras write the same file or folder: {', '.join(shared)}; give each its own")

    def run(self) -> MultiRunSummary:
        self._check_outputs()
        previous = install_stop_signals(self.stop)
        self._inference_done = threading.Event()
        threads: list[threading.Thread] = []
        started = time.perf_counter()
        try:
            if self.web_address:  # first: a port in use is refused before any output is made
                from .web import WebServer

                self.web = WebServer(self, self.web_address)
                self.log(f"edge_app: web page at {self.web.url} (metrics at {self.web.url}metrics)")
            for camera in self.cameras:  # files and devices now: a wrong path is refused before anything runs
                if not camera.networked:
                    camera.open()
            self.log(f"edge_app: {len(self.cameras)} cameras ({', '.join(c.name for c in self.cameras)}); "
                     f"batches of up to {self.batch.max_batch}, waiting at most {self.batch.max_wait_ms:g} ms; "
                     f"model {self.localizer.info.backbone} on {self.localizer.backend.name}")
            for camera in self.cameras:
                for target, role in ((self._read, "reader"), (self._deliver, "worker")):
                    thread = threading.Thread(target=target, args=(camera,), name=f"{role} {camera.name}", daemon=True)
                    thread.start()
                    threads.append(thread)
            last = time.perf_counter()
            self._summarise_every = min(c.summary_every for c in self.configs)
            batchers = [threading.Thread(target=self._infer_then_mark, args=(group,), name=f"inference {i}",
                                         daemon=True) for i, group in enumerate(self.groups)]
            for batcher in batchers:
                batcher.start()
            while any(batcher.is_alive() for batcher in batchers):  # the workers drain once all have ended
                batchers[0].join(0.25) if batchers[0].is_alive() else time.sleep(0.25)
                if time.perf_counter() - last >= self._summarise_every:
                    last = time.perf_counter()
                    self._log_progress()
        finally:
            self._inference_done.set()
            self.stop(self.stopped_by)
            for thread in threads:
                thread.join(timeout=30)
            seconds = time.perf_counter() - started
            for camera in self.cameras:
                if camera.outputs is not None:
                    camera.outputs.close()
                if camera.source is not None:
                    camera.source.close()
            if self.web is not None:
                self.web.close()
            restore_signals(previous)
        return self._summary(seconds)

    def _infer_then_mark(self, group: list[CameraStream]) -> None:
        try:
            self._infer(group)
        except ServerLost as error:  # a triton:// model's server went away and did not come back
            self.log(f"edge_app: {error}")
            self.stop(MODEL_SERVER_LOST)
        except Exception as error:
            self.log(f"edge_app: inference failed: {error}")
            self.stop(f"inference failed: {error}")

    def _log_progress(self) -> None:
        parts = []
        for camera in self.cameras:
            dropped = sum(camera.dropped().values())
            state = " (reconnecting)" if getattr(camera.source, "reconnecting", False) else ""
            parts.append(f"{camera.name}{state} {camera.summary.frames} frames {camera.current_fps():.1f} FPS, "
                         f"dropped {dropped}")
        self.log("edge_app: " + "; ".join(parts))

    def _summary(self, seconds: float) -> MultiRunSummary:
        summary = MultiRunSummary(seconds=seconds, batches=self.batches, batched_frames=self.batched_frames,
                                  stopped_by=self.stopped_by)
        for camera in self.cameras:
            own = camera.summary
            own.seconds = seconds
            own.stage_ms = camera.stage_means()
            if camera.source is not None:
                own.dropped = sum(camera.dropped().values())
                own.bad += camera.source.stats.bad
                own.reconnects = camera.source.stats.reconnects
            own.stopped_by = camera.stopped_by if self.stopped_by == "end of sources" else self.stopped_by
            if camera.outputs is not None:
                own.events = camera.outputs.events
                own.failed_outputs.update(camera.outputs.failed)
                own.outputs = camera.outputs.written()
            summary.cameras[camera.name] = own
            summary.latency_ms[camera.name] = {k: round(v, 2) for k, v in camera.latency_percentiles().items()}
            summary.dropped[camera.name] = camera.dropped()
        self.log(f"edge_app: done ({summary.stopped_by}): {summary.frames} frames from {len(self.cameras)} cameras "
                 f"in {seconds:.1f}s ({summary.fps:.1f} FPS), {self.batches} inference calls")
        return summary
