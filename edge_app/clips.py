"""Event clips: N seconds before an event until N seconds after it, as H.264 MP4 that browsers play.

The frame loop hands each frame to `ClipRecorder.push` and returns at once. A worker thread encodes
every frame into one continuous H.264 stream and keeps the packets of the last `pre_seconds` (a ring
of encoded frames, from a keyframe: a few KB per frame instead of 900 KB raw). A clip is a copy of
packets, never a second encoding: the ring's from the keyframe at or before `pre_seconds` before
its first event (so up to `clip_streams.KEYFRAME_SECONDS` more), then the live ones while its events last, until
`post_seconds` after the last of them (or `max_seconds`). Events that overlap share one clip, and
each event names its clip. It is written as `<id>.mp4.part` and renamed to `<id>.mp4` when complete,
with the index up front (`+faststart`), so a browser can play it while it downloads and nobody sees
half a clip.

H.264 comes from PyAV >= 17 (`pip install 'spamcam[video]'`: its wheels bundle FFmpeg with libx264).
Without it, the ring holds JPEGs and clips fall back to OpenCV's MPEG-4 Part 2, which desktop players
read but browsers do not; the app says so once. Retention (count, age, size) is applied to the folder
after every clip.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .clip_streams import ClipFile, EncodedFrame, FilePackets, H264Stream, JpegStream, pyav_muxes_packets
from .video_output import DEFAULT_X264_PRESET

__all__ = ["ClipRecorder", "Retention", "pyav_muxes_packets", "DEFAULT_PRE_SECONDS", "DEFAULT_POST_SECONDS", "DEFAULT_MAX_SECONDS"]

DEFAULT_PRE_SECONDS = 5.0
DEFAULT_POST_SECONDS = 5.0
DEFAULT_MAX_SECONDS = 120.0  # a clip stops here even if its event goes on (a parked car)
_QUEUE_FRAMES = 64  # frames waiting for the worker; beyond this a frame is left out (counted), never the camera waits
_COPY_TICK_SECONDS = 0.05  # copying a file's packets, the worker catches up with the app this often


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


@dataclass
class _Recording:
    """One clip file and the events it shows; events that overlap share it."""

    path: Path
    started: float  # frame time of the first event's start
    events: set = field(default_factory=set)  # names of the events still going on
    stop_at: float | None = None  # frame time after which it ends (set when its last event ended)
    file: ClipFile | None = None  # opened by the worker at its first frame
    top_pts: int = -2**63  # the latest presentation time written


class ClipRecorder:
    """`start(name, at)` when an event begins (returns its clip's path), `stop(name, at)` when it
    ends; frames via `push`.

    Events that overlap in time share one recording, from `pre_seconds` before the first to
    `post_seconds` after the last (at most `max_seconds`): one file at a time, so memory and CPU
    stay those of one video however many objects come and go (with a clip per event, 25 clips open
    at once grew the process by 800 MB; docs/benchmarks.md)."""

    def __init__(self, folder: str | Path, *, fps: float, pre_seconds: float = DEFAULT_PRE_SECONDS,
                 post_seconds: float = DEFAULT_POST_SECONDS, max_seconds: float = DEFAULT_MAX_SECONDS,
                 retention: Retention | None = None, log: Callable[[str], None] | None = None,
                 copy_from: str | Path | None = None, preset: str = DEFAULT_X264_PRESET) -> None:
        """`copy_from`: the video file the frames come from (unflipped), whose packets clips copy
        where it is H.264 that browsers play; otherwise (and for cameras) frames are encoded with
        x264's `preset`."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps, self.pre, self.post, self.max = fps or 25.0, pre_seconds, post_seconds, max_seconds
        self.preset = preset
        self.retention = retention or Retention()
        self.log = log or (lambda message: None)
        self.written = self.failed = self.dropped_frames = 0
        self.failed_paths: set[str] = set()  # clips lost to a failed write: events must not name them
        self.last_error: str | None = None
        self._h264 = pyav_muxes_packets()
        copied = FilePackets.open(Path(copy_from)) if copy_from is not None else None
        self._encoder = copied or self._new_encoder()
        self._copying = copied is not None
        self._reached: float | None = None  # copying: the latest frame time pushed
        self._last_taken: float | None = None  # copying: how far the worker has read
        self._ring: collections.deque[EncodedFrame] = collections.deque()  # the last pre_seconds, from a keyframe
        self._keyframes: collections.deque[EncodedFrame] = collections.deque()  # the ring's keyframes
        self._lock = threading.Lock()  # guards _recording between the frame loop and the worker
        self._recording: _Recording | None = None  # the one an event that begins now joins
        self._pending: collections.deque[_Recording] = collections.deque()  # made by start(), not yet opened
        self._frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._closing = threading.Event()
        if not self._h264:
            self.log("edge_app: clips are MPEG-4 Part 2 without PyAV >= 17, which browsers do not play: "
                     "pip install 'spamcam[video]' for H.264")
        self._thread = threading.Thread(target=self._work, name="spamcam-clips", daemon=True)
        self._thread.start()

    def push(self, image: np.ndarray, frame_time: float) -> None:
        if self._copying:  # the packets are in the file: the worker only needs to know how far the app is
            self._reached = frame_time
            return
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
                recording = _Recording(self.folder / f"{name}.mp4", started=at)
                self._recording = recording  # the one it replaces goes on to the end of its post-roll
                self._pending.append(recording)  # the worker opens it when its frames come
            recording.events.add(name)
            recording.stop_at = None
            return recording.path

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

    def stats(self) -> dict[str, int | str]:
        return {"written": self.written, "failed": self.failed, "dropped_frames": self.dropped_frames,
                "recording": int(self._recording is not None), "video": self.video}

    @property
    def video(self) -> str:
        """How clips get their video: copied from the source file, or encoded (H.264 or MPEG-4)."""
        if isinstance(self._encoder, FilePackets):
            return "copied from the source"
        return "encoded H.264" if self._h264 else "encoded MPEG-4 Part 2"

    # ---- the worker --------------------------------------------------------------------------
    def _new_encoder(self) -> H264Stream | JpegStream:
        return H264Stream(self.fps, self.preset) if self._h264 else JpegStream(self.fps)

    def _work(self) -> None:
        writing: list[_Recording] = []  # open files: the current recording, and one replaced in its post-roll
        while True:
            frames = self._waiting()
            if not frames and self._closing.is_set():
                break
            for image, frame_time in frames:
                writing = self._take_frame(writing, image, frame_time)
        self._end_stream(writing)
        with self._lock:
            self._recording = None
        self._close_encoder()

    def _waiting(self) -> list[tuple[np.ndarray | None, float]]:
        """The frames queued (waiting a moment for the first): [] when there were none. Copying, the
        worker wakes every `_COPY_TICK_SECONDS` and takes the file's packets as far as the app has
        come: waking for each frame cost the frame loop ~10 % at 600 FPS (docs/benchmarks.md)."""
        if self._copying:
            time.sleep(_COPY_TICK_SECONDS)
            reached = self._reached
            if reached is None or reached == self._last_taken:
                return []
            self._last_taken = reached
            return [(None, reached)]
        try:
            frames = [self._frames.get(timeout=0.05)]
        except queue.Empty:
            return []
        while True:
            try:
                frames.append(self._frames.get_nowait())
            except queue.Empty:
                return frames

    def _take_frame(self, writing: list[_Recording], image: np.ndarray | None, frame_time: float) -> list[_Recording]:
        if image is None:  # copying: the packets come from the file
            return self._feed(writing, lambda: self._encoder.encode(None, frame_time))
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self._encoder.shape not in (None, image.shape):  # the camera came back at another size
            self._end_stream(writing)
            self._new_stream()
            writing = []
        return self._feed(writing, lambda: self._encoder.encode(image, frame_time))

    def _feed(self, writing: list[_Recording], encode: Callable[[], list[EncodedFrame]]) -> list[_Recording]:
        """Encode (or read) the next packets and take them; an encoder that fails (out of memory, a
        damaged source file) loses the clips it was writing, and the next ones are encoded afresh."""
        try:
            units = encode()
        except Exception as error:  # noqa: BLE001 — clips stop for these, the app goes on
            for recording in writing:
                self._drop(recording, error)
            if self._copying:  # the file cannot be read on: encode the frames themselves from here
                self.log(f"edge_app: clips: cannot read the source file's packets any more ({error}); "
                         "encoding the frames instead")
                self._copying = False
            self._new_stream()
            return []
        for unit in units:
            writing = self._take(writing, unit)
        return writing

    def _end_stream(self, writing: list[_Recording]) -> None:
        """The packets still in the encoder, then the recordings end with what they have (one that
        began at the last frame, too)."""
        writing = self._feed(writing, self._encoder.flush)
        while (recording := self._next_pending(None)) is not None:
            if not self._ring:  # not one frame of it was kept: its events must not name it
                self._lost(recording, RuntimeError("no frame of it reached the clip thread"))
                continue
            opened = self._open(recording)
            writing += [opened] if opened is not None else []
        for recording in writing:
            self._end(recording)

    def _new_stream(self) -> None:
        self._close_encoder()
        self._encoder = self._new_encoder()
        self._ring.clear()
        self._keyframes.clear()

    def _close_encoder(self) -> None:
        if isinstance(self._encoder, FilePackets):
            self._encoder.close()

    def _remember(self, unit: EncodedFrame) -> None:
        """Keep the last `pre` seconds in the ring, starting at a keyframe."""
        self._ring.append(unit)
        if unit.keyframe:
            self._keyframes.append(unit)
        cutoff = unit.time - self.pre
        while len(self._keyframes) > 1 and self._keyframes[1].time <= cutoff:
            self._keyframes.popleft()
            while self._ring[0] is not self._keyframes[0]:
                self._ring.popleft()

    def _preroll(self, since: float) -> list[EncodedFrame]:
        """The ring from the last keyframe at or before `since` (or its first, if it is younger)."""
        first = self._keyframes[0] if self._keyframes else None
        for keyframe in self._keyframes:
            if keyframe.time > since:
                break
            first = keyframe
        units = list(self._ring)
        return units[next((i for i, unit in enumerate(units) if unit is first), len(units)):]

    def _take(self, writing: list[_Recording], unit: EncodedFrame) -> list[_Recording]:
        """One packet: into the ring, and into every recording whose time it is in."""
        self._remember(unit)
        still = []
        for recording in writing:
            with self._lock:  # decided with start() shut out: an event that joins it now gets a new one
                over = self._over(recording, unit)
                if over and self._recording is recording:
                    self._recording = None
            if over:
                self._finish(recording)
            elif self._write(recording, unit):
                still.append(recording)
        while (recording := self._next_pending(unit.time)) is not None:
            opened = self._open(recording)  # its pre-roll from the ring, this packet included
            still += [opened] if opened is not None else []
        return still

    def _next_pending(self, now: float | None) -> _Recording | None:
        """The oldest recording start() made whose first frame has come by `now` (None: any)."""
        with self._lock:
            if self._pending and (now is None or now >= self._pending[0].started - self.pre):
                return self._pending.popleft()
        return None

    def _over(self, recording: _Recording, unit: EncodedFrame) -> bool:
        """Past its post-roll (or its longest): it ends before a packet that shows a later frame than
        any so far, so that every frame before is in (a B-frame after that packet is shown earlier,
        but its reference would be missing)."""
        over = (recording.stop_at is not None and unit.time > recording.stop_at) or \
            unit.time - recording.started > self.max
        return over and (unit.pts is None or unit.pts > recording.top_pts)

    def _end(self, recording: _Recording) -> None:
        self._finish(recording)
        self._forget(recording)

    def _forget(self, recording: _Recording) -> None:
        """An event that begins from now on gets a new recording, not this one."""
        with self._lock:
            if self._recording is recording:
                self._recording = None

    def _open(self, recording: _Recording) -> _Recording | None:
        """Begin with the seconds before the event, from the ring (the latest frame included)."""
        recording.file = self._encoder.clip_file(recording.path)
        for unit in self._preroll(recording.started - self.pre):
            if not self._write(recording, unit):
                return None
        return recording

    def _write(self, recording: _Recording, unit: EncodedFrame) -> bool:
        try:
            recording.file.write(unit)
            if unit.pts is not None:
                recording.top_pts = max(recording.top_pts, unit.pts)
            return True
        except Exception as error:  # a full disk, a vanished folder: this clip is lost, the app goes on
            self._drop(recording, error)
            return False

    def _drop(self, recording: _Recording, error: Exception) -> None:
        """The recording is lost and no longer current."""
        self._lost(recording, error)
        self._forget(recording)

    def _lost(self, recording: _Recording, error: Exception) -> None:
        self.failed += 1
        self.last_error = str(error)
        self.failed_paths.add(str(recording.path))
        self.log(f"edge_app: error: clip {recording.path} failed: {error}")
        if recording.file is not None:
            recording.file.abandon()

    def _finish(self, recording: _Recording) -> None:
        try:
            path = recording.file.close() if recording.file is not None else None
        except Exception as error:
            self._lost(recording, error)
            return
        if path is not None:
            self.written += 1
            for removed in self.retention.apply(self.folder, (".mp4",)):
                self.log(f"edge_app: retention: removed {removed.name}")
