"""Prometheus metrics of a running edge_app, served at /metrics by its web page (edge_app/web.py).

prometheus-client is optional (`pip install 'spamcam[web]'`): without it the app runs as before and
/metrics answers 501 saying what to install. Each app has its own registry, so two apps in one
process (tests, a supervisor) never mix their numbers. Counters kept by the sources themselves
(frames dropped at the source, reconnects) are read when scraped, not copied on every frame.
"""
from __future__ import annotations

from typing import Any

__all__ = ["AppMetrics", "CONTENT_TYPE", "prometheus_available"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Stage latencies span 0.1 ms (post-processing LeNet) to seconds (a stalled encoder).
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def prometheus_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class AppMetrics:
    """Frames, detections, drops, reconnects, per-stage and end-to-end latency histograms per camera,
    and the batch sizes of the inference calls. A no-op without prometheus-client."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.registry = None
        if not prometheus_available():
            return
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.frames = Counter("edge_app_frames", "frames processed", ["camera"], registry=self.registry)
        self.detections = Counter("edge_app_detections", "boxes kept", ["camera"], registry=self.registry)
        self.stages = Histogram("edge_app_stage_seconds", "time per frame in each stage", ["camera", "stage"],
                                buckets=_BUCKETS, registry=self.registry)
        self.latency = Histogram("edge_app_latency_seconds", "from capture to the frame's outputs written",
                                 ["camera"], buckets=_BUCKETS, registry=self.registry)
        self.batch_sizes = Histogram("edge_app_batch_size", "frames per inference call",
                                     buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=self.registry)
        self.registry.register(_SourceCollector(app))

    def frame(self, camera: str, stages_ms: dict[str, float], latency_ms: float, detections: int) -> None:
        if self.registry is None:
            return
        self.frames.labels(camera).inc()
        self.detections.labels(camera).inc(detections)
        for stage, ms in stages_ms.items():
            self.stages.labels(camera, stage).observe(ms / 1000)
        self.latency.labels(camera).observe(latency_ms / 1000)

    def batch(self, size: int) -> None:
        if self.registry is not None:
            self.batch_sizes.observe(size)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _SourceCollector:
    """Counters the cameras keep themselves, read at scrape time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        dropped = CounterMetricFamily("edge_app_dropped_frames", "frames lost, by where", labels=["camera", "stage"])
        reconnects = CounterMetricFamily("edge_app_reconnects", "times a live source was reopened", labels=["camera"])
        bad = CounterMetricFamily("edge_app_bad_frames", "frames that could not be decoded or processed",
                                  labels=["camera"])
        fps = GaugeMetricFamily("edge_app_fps", "processed frames per second (moving average)", labels=["camera"])
        up = GaugeMetricFamily("edge_app_camera_up", "1 while the camera delivers frames (0: ended, or reconnecting)",
                               labels=["camera"])
        for camera in self.app.cameras:
            for stage, count in camera.dropped().items():
                dropped.add_metric([camera.name, stage], count)
            stats = camera.source.stats if camera.source is not None else None
            reconnects.add_metric([camera.name], stats.reconnects if stats else 0)
            bad.add_metric([camera.name], camera.summary.bad + (stats.bad if stats else 0))
            fps.add_metric([camera.name], camera.current_fps())
            up.add_metric([camera.name], 1.0 if camera.up else 0.0)
        return [dropped, reconnects, bad, fps, up]
