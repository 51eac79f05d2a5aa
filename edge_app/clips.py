"""Event clips: N seconds before an event until N seconds after it, as H.264 MP4 that browsers play.

The frame loop hands each frame to `ClipRecorder.push` and returns at once; a worker thread keeps the
last `pre_seconds` as JPEG (a ring buffer of encoded frames: ~30 KB per 640x480 frame instead of
900 KB raw) and feeds the recording. A clip starts with the ring's frames, goes on with live frames
while its events last, and ends `post_seconds` after the last of them (or at `max_seconds`); events
that overlap share one clip, and each event names its clip. It is
written as `<id>.mp4.part` and renamed to `<id>.mp4` when complete, with the index up front
(`+faststart`), so a browser can play it while it downloads and nobody sees half a clip.

H.264 comes from PyAV (`pip install 'spamcam[video]'`: its wheels bundle FFmpeg with libx264).
Without PyAV, clips fall back to OpenCV's MPEG-4 Part 2, which desktop players read but browsers do
not; the app says so once. Retention (count, age, size) is applied to the folder after every clip.
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .video_output import pyav_available

__all__ = ["ClipRecorder", "Retention", "DEFAULT_PRE_SECONDS", "DEFAULT_POST_SECONDS", "DEFAULT_MAX_SECONDS"]

DEFAULT_PRE_SECONDS = 5.0
DEFAULT_POST_SECONDS = 5.0
DEFAULT_MAX_SECONDS = 120.0  # a clip stops here even if its event goes on (a parked car)
_JPEG_QUALITY = 85
_QUEUE_FRAMES = 64  # frames waiting for the worker; beyond this the oldest go (counted), never the camera


@dataclass
class Retention:
    """Keep at most `count` files, none older than `days`, at most `megabytes` in all (0 = no limit)."""

    count: int = 0
    days: float = 0.0
    megabytes: float = 0.0

    def apply(self, folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
        """Delete the oldest files of `folder` with these suffixes until every limit holds; returns them."""
        if not (self.count or self.days or self.megabytes):
            return []  # no limit: no need to list the folder after every file
        files = sorted((p for p in folder.iterdir() if p.suffix in suffixes and p.is_file()), key=_mtime)
        removed = []
        now = time.time()
        total = sum(_size(p) for p in files)
        while files and ((self.count and len(files) > self.count) or (self.days and now - _mtime(files[0]) > self.days * 86400)
                         or (self.megabytes and total > self.megabytes * 2**20)):
            oldest = files.pop(0)
            total -= _size(oldest)
            try:
                oldest.unlink()
                removed.append(oldest)
            except FileNotFoundError:
                pass
        return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _ClipWriter:
    """One clip file: H.264 through PyAV, or OpenCV's MPEG-4 without it."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.fps, self.frames = fps, 0
        self._container = self._stream = self._opencv = None

    def write(self, image: np.ndarray) -> None:
        if self._container is None and self._opencv is None:
            self._open(image)
        if self._container is not None:
            import av

            height, width = image.shape[:2]
            image = np.ascontiguousarray(image[: height - height % 2, : width - width % 2])  # yuv420p: even sizes
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = self.frames
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        else:
            self._opencv.write(image)
        self.frames += 1

    def _open(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if pyav_available():
            import av

            self._container = av.open(str(self.part), "w", format="mp4", options={"movflags": "+faststart"})
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1000))
            stream.width, stream.height = width - width % 2, height - height % 2
            stream.pix_fmt = "yuv420p"  # what browsers decode
            stream.options = {"preset": "veryfast", "crf": "26"}
            self._stream = stream
        else:
            self._opencv = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*"mp4v"), float(self.fps), (width, height))

    def close(self) -> Path | None:
        """Finish the file and rename it into place; None when no frame came."""
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        elif self._opencv is not None:
            self._opencv.release()
        else:
            return None
        os.replace(self.part, self.path)
        return self.path

    def abandon(self) -> None:
        try:
            if self._container is not None:
                self._container.close()
        except Exception:  # noqa: BLE001 — already failing; the .part is removed below
            pass
        self.part.unlink(missing_ok=True)


@dataclass
class _Recording:
    """One clip file and the events it shows; events that overlap share it."""

    writer: _ClipWriter
    started: float  # frame time of the first event's start
    events: set = field(default_factory=set)  # names of the events still going on
    stop_at: float | None = None  # frame time after which it ends (set when its last event ended)


class ClipRecorder:
    """`start(name, at)` when an event begins (returns its clip's path), `stop(name, at)` when it
    ends; frames via `push`.

    Events that overlap in time share one recording, from `pre_seconds` before the first to
    `post_seconds` after the last (at most `max_seconds`): one encoder at a time, so memory and CPU
    stay those of one video however many objects come and go (with a clip per event, 25 clips open
    at once grew the process by 800 MB; docs/benchmarks.md)."""

    def __init__(self, folder: str | Path, *, fps: float, pre_seconds: float = DEFAULT_PRE_SECONDS,
                 post_seconds: float = DEFAULT_POST_SECONDS, max_seconds: float = DEFAULT_MAX_SECONDS,
                 retention: Retention | None = None, log: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps, self.pre, self.post, self.max = fps or 25.0, pre_seconds, post_seconds, max_seconds
        self.retention = retention or Retention()
        self.log = log or (lambda message: None)
        self.written = self.failed = self.dropped_frames = 0
        self.failed_paths: set[str] = set()  # clips lost to a failed write: events must not name them
        self.last_error: str | None = None
        self._ring: collections.deque = collections.deque()  # (frame time, JPEG bytes)
        self._lock = threading.Lock()  # guards _recording between the frame loop and the worker
        self._recording: _Recording | None = None
        self._frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._closing = threading.Event()
        if not pyav_available():
            self.log("edge_app: clips are MPEG-4 Part 2 without PyAV, which browsers do not play: "
                     "pip install 'spamcam[video]' for H.264")
        self._thread = threading.Thread(target=self._work, name="spamcam-clips", daemon=True)
        self._thread.start()

    def push(self, image: np.ndarray, frame_time: float) -> None:
        try:
            self._frames.put_nowait((image, frame_time))
        except queue.Full:  # the encoder is behind: this frame is not in the clip (counted)
            self.dropped_frames += 1

    def start(self, name: str, at: float) -> Path:
        """The event `name` began at frame time `at`: its clip's path — the recording still going on
        (or in its post-roll), or a new one."""
        with self._lock:
            recording = self._recording
            if recording is None or (recording.stop_at is not None and at > recording.stop_at):
                recording = _Recording(_ClipWriter(self.folder / f"{name}.mp4", self.fps), started=at)
                self._recording = recording  # the worker finishes the one it replaces
            recording.events.add(name)
            recording.stop_at = None
            return recording.writer.path

    def stop(self, name: str, at: float) -> None:
        with self._lock:
            recording = self._recording
            if recording is not None and name in recording.events:
                recording.events.discard(name)
                if not recording.events:
                    recording.stop_at = at + self.post

    def close(self, timeout: float = 30.0) -> None:
        """End the recording with the frames it has (the source ended or the app stops)."""
        self._closing.set()
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "failed": self.failed, "dropped_frames": self.dropped_frames,
                "recording": int(self._recording is not None)}

    # ---- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        active: _Recording | None = None
        while True:
            try:
                image, frame_time = self._frames.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set():
                    break
                continue
            active = self._take(active, image, frame_time)
        if active is not None:
            self._finish(active)
        with self._lock:
            self._recording = None

    def _take(self, active: _Recording | None, image: np.ndarray, frame_time: float) -> _Recording | None:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if ok:
            self._ring.append((frame_time, jpeg))
        while self._ring and self._ring[0][0] < frame_time - self.pre:
            self._ring.popleft()
        with self._lock:
            current = self._recording
        if active is not None and active is not current:  # a new recording replaced it
            self._finish(active)
            active = None
        if current is None:
            return None
        if active is None:  # begin with the seconds before the event, from the ring (this frame included)
            for ring_time, ring_jpeg in list(self._ring):
                if ring_time >= current.started - self.pre:
                    if not self._write(current, cv2.imdecode(ring_jpeg, cv2.IMREAD_COLOR)):
                        return None
            return current
        if (active.stop_at is not None and frame_time > active.stop_at) or frame_time - active.started > self.max:
            self._finish(active)
            with self._lock:
                if self._recording is active:
                    self._recording = None
            return None
        if frame_time >= active.started - self.pre and not self._write(active, image):
            return None
        return active

    def _write(self, recording: _Recording, image: np.ndarray) -> bool:
        try:
            recording.writer.write(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
            return True
        except Exception as error:  # a full disk, a vanished folder: this clip is lost, the app goes on
            self._lost(recording, error)
            with self._lock:
                if self._recording is recording:
                    self._recording = None
            return False

    def _lost(self, recording: _Recording, error: Exception) -> None:
        self.failed += 1
        self.last_error = str(error)
        self.failed_paths.add(str(recording.writer.path))
        self.log(f"edge_app: error: clip {recording.writer.path} failed: {error}")
        recording.writer.abandon()

    def _finish(self, recording: _Recording) -> None:
        try:
            path = recording.writer.close()
        except Exception as error:
            self._lost(recording, error)
            return
        if path is not None:
            self.written += 1
            for removed in self.retention.apply(self.folder, (".mp4",)):
                self.log(f"edge_app: retention: removed {removed.name}")
