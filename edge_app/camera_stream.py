"""One camera inside the multi-camera app (edge_app/multi.py): its source, its two bounded queues
(frames waiting for inference, results waiting for its worker), its outputs and its counters, and
what the web page and /metrics read from it."""
from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from runtime.confidence import BoxPolicy
from runtime.localizer import Localizer, Prepared

from .app import RunSummary
from .camera_outputs import CameraOutputs
from .sources import NETWORK_SCHEMES, Frame, open_source

__all__ = ["CameraStream", "Captured", "DropOldestQueue", "PIPELINE_STAGES"]

PIPELINE_STAGES = ("capture", "wait", "preprocess", "inference", "postprocess", "output")
_LATENCY_SAMPLES = 4096  # per camera, for p50/p99: constant memory on a run of any length


@dataclass
class Captured:
    frame: Frame
    captured: float  # perf_counter when it arrived (live: at the source; files: when the reader got it)
    capture_ms: float
    prepared: Prepared  # pre-processed on the reader's thread


class DropOldestQueue:
    """A bounded queue whose `put` drops the oldest item when full and counts it (back-pressure for
    live cameras), or waits for room (`block`: files, which must not lose frames)."""

    def __init__(self, size: int) -> None:
        self.items: collections.deque = collections.deque()
        self.size = size
        self.dropped = 0
        self.in_flight = 0
        self.condition = threading.Condition()

    def put(self, item, *, block: bool, stop: threading.Event, notify: threading.Condition | None = None) -> None:
        with self.condition:
            while block and len(self.items) >= self.size and not stop.is_set():
                self.condition.wait(0.1)
            if block and len(self.items) >= self.size:
                return  # stopping: a file's frame that was never processed is not a dropped one
            if len(self.items) >= self.size:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.condition.notify_all()
        if notify is not None:
            with notify:
                notify.notify_all()

    def get_nowait(self, *, claim: bool = False):
        """The oldest item; `claim`: the taker will `release` it once it has passed it on, and until
        then the queue does not count as `drained`."""
        with self.condition:
            if not self.items:
                raise queue.Empty
            item = self.items.popleft()
            self.in_flight += claim
            self.condition.notify_all()
            return item

    def release(self) -> None:
        with self.condition:
            self.in_flight -= 1

    def drained(self) -> bool:
        """Nothing waiting and nothing taken but not yet passed on."""
        with self.condition:
            return not self.items and self.in_flight == 0

    def get(self, timeout: float):
        with self.condition:
            if not self.items:
                self.condition.wait(timeout)
            if not self.items:
                raise queue.Empty
            item = self.items.popleft()
            self.condition.notify_all()
            return item

    def __len__(self) -> int:
        return len(self.items)


class CameraStream:
    """One camera's source, queues, outputs and counters."""

    def __init__(self, config, localizer: Localizer, queue_frames: int, log: Callable[[str], None]) -> None:
        """`config`: the camera's AppConfig; `queue_frames`: how many frames each of its queues holds."""
        self.name = config.camera
        self.config = config
        self.log = log
        self.prefix = f"[{self.name}] "
        self.policy = BoxPolicy(min_confidence=config.min_confidence, overlap_iou=config.overlap_iou)
        self.inputs = DropOldestQueue(queue_frames)
        self.work = DropOldestQueue(queue_frames)
        self.summary = RunSummary()
        self.stage_sums = dict.fromkeys(PIPELINE_STAGES, 0.0)
        self.latencies: collections.deque = collections.deque(maxlen=_LATENCY_SAMPLES)
        self.fps = 0.0
        self._last_done: float | None = None
        self.read_frames = 0
        self.reading = True  # the reader is still delivering
        self.halt = threading.Event()  # this camera stops: the app stops, or every output of it failed
        self.stopped_by = "end of source"
        self.source = None
        self.outputs: CameraOutputs | None = None
        self.latest: dict = {"detections": [], "frame": None}  # for the web page
        self.preview: bytes | None = None
        self._preview_at = 0.0
        self.lock = threading.Lock()
        self.localizer = localizer

    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    @property
    def networked(self) -> bool:
        """A network stream: it may be down at start-up and is waited for (retried) on its own thread,
        so that one dead camera neither blocks nor delays the others."""
        return str(self.config.source).split("://", 1)[0] in NETWORK_SCHEMES

    def open(self) -> None:
        config = self.config
        self.source = open_source(config.source, width=config.width, height=config.height, fps=config.fps,
                                  flip=config.flip, give_up_after=config.reconnect_timeout, log=self.log,
                                  stall_timeout=config.stall_timeout, realtime=config.realtime)
        self.outputs = CameraOutputs(config, self.localizer, fps=config.output_fps or self.source.fps or 30.0,
                                     log=self.log, prefix=self.prefix)

    def dropped(self) -> dict[str, int]:
        """Frames lost, by where: at the source (a live camera's newest-frame policy), waiting for
        inference, waiting for post-processing."""
        source = self.source.stats.dropped if self.source is not None else 0
        return {"source": source, "inference_queue": self.inputs.dropped, "output_queue": self.work.dropped}

    @property
    def up(self) -> bool:
        """Delivering frames: reading, and not reconnecting a lost live source."""
        return self.reading and not getattr(self.source, "reconnecting", False)

    def current_fps(self) -> float:
        """The moving average, or 0 once no frame has been done for 2 s (a silent camera shows 0)."""
        if self._last_done is None or time.perf_counter() - self._last_done > 2.0:
            return 0.0
        return self.fps

    def stage_means(self) -> dict[str, float]:
        count = self.summary.frames
        return {k: (v / count if count else 0.0) for k, v in self.stage_sums.items()}

    def latency_percentiles(self) -> dict[str, float]:
        if not self.latencies:
            return {"p50": 0.0, "p99": 0.0}
        values = np.fromiter(self.latencies, dtype=np.float64)
        return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}

    def state(self) -> dict:
        """What the web page and /api/state show for this camera."""
        with self.lock:
            latest = dict(self.latest)
        stats = self.source.stats if self.source is not None else None
        return {"name": self.name, "source": self.config.source, "frames": self.summary.frames,
                "fps": round(self.current_fps(), 2), "up": self.up,
                "reconnecting": bool(getattr(self.source, "reconnecting", False)),
                "stage_ms": {k: round(v, 2) for k, v in self.stage_means().items()},
                "latency_ms": {k: round(v, 2) for k, v in self.latency_percentiles().items()},
                "dropped": self.dropped(), "reconnects": stats.reconnects if stats else 0,
                "running": self.reading or len(self.work) > 0, "stopped_by": None if self.reading else self.stopped_by,
                **latest}
