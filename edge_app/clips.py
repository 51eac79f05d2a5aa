"""Event clips: N seconds before an event until N seconds after it, as H.264 MP4 that browsers play.

The frame loop hands each frame to `ClipRecorder.push` and returns at once; a worker thread keeps the
last `pre_seconds` as JPEG (a ring buffer of encoded frames: ~30 KB per 640x480 frame instead of
900 KB raw) and feeds the clips being written. A clip starts with the ring's frames, goes on with
live frames while the event lasts, and ends `post_seconds` after it (or at `max_seconds`). It is
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
from dataclasses import dataclass
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
class _Clip:
    writer: _ClipWriter
    started: float  # frame time of the event's start
    stop_at: float | None = None  # frame time after which the clip ends


class ClipRecorder:
    """`start(name, at)` when an event begins, `stop(name, at)` when it ends; frames via `push`."""

    def __init__(self, folder: str | Path, *, fps: float, pre_seconds: float = DEFAULT_PRE_SECONDS,
                 post_seconds: float = DEFAULT_POST_SECONDS, max_seconds: float = DEFAULT_MAX_SECONDS,
                 retention: Retention | None = None, log: Callable[[str], None] | None = None,
                 on_written: Callable[[str, Path], None] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps, self.pre, self.post, self.max = fps or 25.0, pre_seconds, post_seconds, max_seconds
        self.retention = retention or Retention()
        self.log = log or (lambda message: None)
        self.on_written = on_written or (lambda name, path: None)
        self.written = self.failed = self.dropped_frames = 0
        self._ring: collections.deque = collections.deque()  # (frame time, JPEG bytes)
        self._clips: dict[str, _Clip] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._done = threading.Event()
        if not pyav_available():
            self.log("edge_app: clips are MPEG-4 Part 2 without PyAV, which browsers do not play: "
                     "pip install 'spamcam[video]' for H.264")
        self._thread = threading.Thread(target=self._work, name="spamcam-clips", daemon=True)
        self._thread.start()

    def path_for(self, name: str) -> Path:
        return self.folder / f"{name}.mp4"

    def push(self, image: np.ndarray, frame_time: float) -> None:
        try:
            self._frames.put_nowait((image, frame_time))
        except queue.Full:
            self.dropped_frames += 1

    def start(self, name: str, at: float) -> Path:
        self._inbox.put(("start", name, at))
        return self.path_for(name)

    def stop(self, name: str, at: float) -> None:
        self._inbox.put(("stop", name, at))

    def close(self, timeout: float = 30.0) -> None:
        """End every clip with the frames it has (the source ended or the app stops)."""
        self._inbox.put(("close", None, None))
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "failed": self.failed, "dropped_frames": self.dropped_frames,
                "recording": len(self._clips)}

    # ---- the worker --------------------------------------------------------------------------
    def _work(self) -> None:
        closing = False
        while True:
            while True:  # commands first: a clip must exist before the frames it takes arrive
                try:
                    command, name, at = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if command == "start":
                    self._begin(name, at)
                elif command == "stop" and name in self._clips:
                    self._clips[name].stop_at = at + self.post
                elif command == "close":
                    closing = True
            if closing and self._frames.empty():
                for name in list(self._clips):
                    self._finish(name)
                return
            try:
                image, frame_time = self._frames.get(timeout=0.05)
            except queue.Empty:
                continue
            self._take(image, frame_time)

    def _take(self, image: np.ndarray, frame_time: float) -> None:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if ok:
            self._ring.append((frame_time, jpeg))
        while self._ring and self._ring[0][0] < frame_time - self.pre:
            self._ring.popleft()
        for name, clip in list(self._clips.items()):
            if (clip.stop_at is not None and frame_time > clip.stop_at) or frame_time - clip.started > self.max:
                self._finish(name)
                continue
            self._write(name, image)

    def _begin(self, name: str, at: float) -> None:
        clip = _Clip(_ClipWriter(self.path_for(name), self.fps), started=at)
        self._clips[name] = clip
        for frame_time, jpeg in list(self._ring):  # the seconds before the event
            if frame_time >= at - self.pre:
                self._write(name, cv2.imdecode(jpeg, cv2.IMREAD_COLOR))

    def _write(self, name: str, image: np.ndarray) -> None:
        clip = self._clips.get(name)
        if clip is None:
            return
        try:
            clip.writer.write(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        except Exception as error:  # a full disk, a vanished folder: this clip is lost, the app goes on
            self.failed += 1
            self.log(f"edge_app: error: clip {clip.writer.path} failed: {error}")
            clip.writer.abandon()
            del self._clips[name]

    def _finish(self, name: str) -> None:
        clip = self._clips.pop(name)
        try:
            path = clip.writer.close()
        except Exception as error:
            self.failed += 1
            self.log(f"edge_app: error: clip {clip.writer.path} failed: {error}")
            clip.writer.abandon()
            return
        if path is not None:
            self.written += 1
            self.on_written(name, path)
            for removed in self.retention.apply(self.folder, (".mp4",)):
                self.log(f"edge_app: retention: removed {removed.name}")
