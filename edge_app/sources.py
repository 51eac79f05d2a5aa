"""Frame sources by URI, following jetson-inference's conventions:

    csi://0              Jetson CSI camera (GStreamer nvarguscamerasrc; needs OpenCV with GStreamer)
    v4l2:///dev/video0   USB/V4L2 camera (also a bare index: 0)
    rtsp://host/stream   network stream (also http(s):// MJPEG/HLS streams)
    video.mp4            a video file, frame by frame (or, with realtime, at its frame rate)
    image.jpg | folder/  an image, or a folder of images in name order

Live sources (cameras, streams) are read on their own thread; the app always gets the newest frame
and the stale ones are dropped and counted. A live source that fails is reopened with exponential
back-off. Files are processed frame by frame, nothing dropped; an undecodable frame is skipped and
counted.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from runtime.errors import ConfigError, DataError, SpamcamError
from runtime.images import IMAGE_SUFFIXES, is_image_file, read_image

__all__ = ["Frame", "SourceStats", "SourceError", "SourceLost", "open_source", "video_file", "gstreamer_available",
           "NETWORK_SCHEMES", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".h265")


class SourceError(SpamcamError, RuntimeError):
    """The source cannot be opened at all (wrong URI, missing device, missing codec support)."""


class SourceLost(RuntimeError):
    """A live source stopped delivering frames and did not come back in time."""


@dataclass
class Frame:
    image: np.ndarray
    index: int  # position in the source (files) or arrival count (live)
    timestamp: float  # seconds: media time for files; for live sources the wall-clock time it arrived


@dataclass
class SourceStats:
    frames: int = 0  # delivered to the app
    dropped: int = 0  # live: newer frame arrived before the app took this one
    bad: int = 0  # could not be decoded / read
    reconnects: int = 0
    extra: dict = field(default_factory=dict)


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    return any("GStreamer" in line and "YES" in line for line in info.splitlines())


def csi_pipeline(sensor: int, width: int, height: int, fps: int, flip: int) -> str:
    """NVIDIA's Argus camera pipeline into BGR frames for OpenCV's appsink."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! "
            "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1")


_FLIPS = {"none": 0, "counterclockwise": 1, "rotate-180": 2, "clockwise": 3, "horizontal": 4, "vertical": 6}
FLIPS = tuple(_FLIPS)  # the --flip choices


def _apply_flip(image: np.ndarray, flip: str) -> np.ndarray:
    if flip == "none":
        return image
    if flip == "horizontal":
        return cv2.flip(image, 1)
    if flip == "vertical":
        return cv2.flip(image, 0)
    if flip == "rotate-180":
        return cv2.rotate(image, cv2.ROTATE_180)
    if flip == "clockwise":
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if flip == "counterclockwise":
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    raise ConfigError(f"flip must be one of {', '.join(_FLIPS)}, got {flip!r}")


class FileVideoSource:
    live = False
    finished = False

    def __init__(self, path: Path, flip: str = "none") -> None:
        self.path, self.flip = path, flip
        self.capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            raise SourceError(f"{path}: cannot open the video (missing, corrupt, or a codec this OpenCV lacks)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.stats = SourceStats()
        self.position = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        for _ in range(100):  # skip a run of undecodable frames, not forever
            ok, image = self.capture.read()
            index = self.position
            self.position += 1
            if ok and image is not None and image.size:
                self.stats.frames += 1
                return Frame(_apply_flip(image, self.flip), index, index / self.fps)
            if self.total and self.position < self.total:
                self.stats.bad += 1  # inside the file: a damaged frame, keep going
                continue
            return None  # end of the video
        return None

    def close(self) -> None:
        self.capture.release()


class RealtimeFileSource:
    """A video file played at its frame rate on its own thread, as a camera would deliver it: the app
    gets the newest frame and the ones it had no time for are dropped and counted. For rehearsing a
    deployment (and benchmarking) with recorded footage; it ends with the file."""

    live = True

    def __init__(self, path: Path, flip: str = "none") -> None:
        self.file = FileVideoSource(path, flip)
        self.fps, self.stats = self.file.fps, self.file.stats
        self._lock = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            frame = self.file.read()
            if frame is None:
                break
            delay = started + frame.index / self.fps - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._lock:
                if self._latest is not None:
                    self.stats.dropped += 1
                self._latest = Frame(frame.image, frame.index, time.time())
                self._lock.notify_all()
        with self._lock:
            self._ended = True
            self._lock.notify_all()

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._ended and self._latest is None

    def read(self, timeout: float | None = 0.5) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._latest is None and not self._ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._lock.wait(remaining if remaining is not None else 0.5)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.file.close()


class ImageSource:
    live = False
    finished = False

    def __init__(self, paths: list[Path], flip: str = "none", fps: float = 30.0) -> None:
        if not paths:
            raise SourceError("no images found (" + ", ".join(IMAGE_SUFFIXES) + ")")
        self.paths, self.flip, self.fps = paths, flip, fps
        self.stats = SourceStats()
        self.position = 0
        self.first_error = ""

    def read(self, timeout: float | None = None) -> Frame | None:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            try:
                image = read_image(path, "color")
            except DataError as error:  # one bad file in a folder of frames: count it, say it once, go on
                self.stats.bad += 1
                if self.stats.bad == 1:
                    self.first_error = str(error)
                    if len(self.paths) > 1:
                        print(f"edge_app: skipping unreadable images; first: {error}", file=sys.stderr, flush=True)
                continue
            self.stats.frames += 1
            return Frame(_apply_flip(image, self.flip), self.position - 1, (self.position - 1) / self.fps)
        if self.stats.frames == 0:  # nothing at all could be read: that is bad input, not a finished run
            raise SourceError(self.first_error if len(self.paths) == 1 else
                              f"none of the {len(self.paths)} images could be read; first: {self.first_error}")
        return None

    def close(self) -> None:
        pass


class LiveSource:
    """A capture read on its own thread; `read` returns the newest frame, dropping stale ones."""

    live = True

    def __init__(self, opener: Callable[[], cv2.VideoCapture], description: str, *, flip: str = "none",
                 backoff: tuple[float, float] = (0.25, 8.0), give_up_after: float | None = 30.0,
                 log: Callable[[str], None] = print, retry_at_start: bool = False) -> None:
        self.opener, self.description, self.flip, self.log = opener, description, flip, log
        self.backoff, self.give_up_after, self.retry_at_start = backoff, give_up_after, retry_at_start
        self.stats = SourceStats()
        self.fps = 30.0
        self._lock = threading.Condition()
        self._latest: np.ndarray | None = None
        self._arrived_at = 0.0
        self._arrivals = 0
        self._lost_since: float | None = None
        self._failed: str | None = None
        self._stop = threading.Event()
        capture = self._open_with_retries()
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        self._thread = threading.Thread(target=self._run, args=(capture,), name=f"source {description}", daemon=True)
        self._thread.start()

    def _open_with_retries(self) -> cv2.VideoCapture:
        """Open at start-up; a network stream (`retry_at_start`) that is down when the app starts (a
        camera still booting) is retried with the reconnect back-off for up to `give_up_after`."""
        started, delay, attempts = time.monotonic(), self.backoff[0], 0
        while True:
            capture = self.opener()
            if capture.isOpened():
                if attempts:
                    self.log(f"edge_app: {self.description} answered after {time.monotonic() - started:.0f}s")
                return capture
            capture.release()
            attempts += 1
            waited = time.monotonic() - started
            if not self.retry_at_start or (self.give_up_after is not None and waited + delay > self.give_up_after):
                raise SourceError(f"cannot open {self.description}" + (f" (retried for {waited:.0f}s)" if waited >= 1 else ""))
            if attempts == 1:
                limit = "until it does" if self.give_up_after is None else f"for up to {self.give_up_after:g}s"
                self.log(f"edge_app: {self.description} is not answering; retrying {limit}")
            time.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    def _run(self, capture: cv2.VideoCapture) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            ok, image = capture.read() if capture is not None else (False, None)
            if ok and image is not None and image.size:
                delay = self.backoff[0]
                with self._lock:
                    if self._latest is not None:
                        self.stats.dropped += 1  # the app had not taken the previous frame yet
                    self._latest = image
                    self._arrived_at = time.time()  # the frame's timestamp: when it came, not when it was taken
                    self._arrivals += 1
                    self._lost_since = None
                    self._lock.notify_all()
                continue
            # Lost: release, wait, reopen, doubling the wait up to the maximum.
            if capture is not None:
                capture.release()
                capture = None
            with self._lock:
                if self._lost_since is None:
                    self._lost_since = time.monotonic()
                    self.log(f"edge_app: {self.description} stopped delivering frames; reconnecting")
                lost_for = time.monotonic() - self._lost_since
                if self.give_up_after is not None and lost_for > self.give_up_after:
                    self._failed = f"{self.description} lost for {lost_for:.0f}s; gave up"
                    self._lock.notify_all()
                    return
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff[1])
            candidate = self.opener()
            if candidate.isOpened():
                capture = candidate
                self.stats.reconnects += 1
                self.log(f"edge_app: {self.description} reopened (reconnect #{self.stats.reconnects})")
            else:
                candidate.release()
        if capture is not None:
            capture.release()

    @property
    def finished(self) -> bool:
        return self._stop.is_set()

    @property
    def reconnecting(self) -> bool:
        """True while the source is lost and being reopened."""
        with self._lock:
            return self._lost_since is not None

    def read(self, timeout: float | None = 0.5) -> Frame | None:
        """The newest frame, or None if none arrived within `timeout` (or the source was closed).
        Raises SourceLost once reconnecting has given up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._latest is None:
                if self._failed:
                    raise SourceLost(self._failed)
                if self._stop.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._lock.wait(remaining if remaining is not None else 0.5)
            image, self._latest = self._latest, None
            index, arrived = self._arrivals - 1, self._arrived_at
        self.stats.frames += 1
        return Frame(_apply_flip(image, self.flip), index, arrived)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=5)


DEFAULT_STALL_TIMEOUT = 5.0  # seconds without a frame before an open stream counts as lost
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")  # streams FFmpeg opens


def video_file(uri: str) -> Path | None:
    """The video file a source URI names (what FileVideoSource reads), or None: a camera, a stream,
    images. Clips copy such a file's packets instead of encoding its frames again."""
    text = str(uri)
    if "://" in text or text.isdigit():
        return None
    path = Path(text).expanduser()
    return path if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES else None


def open_source(uri: str, *, width: int | None = None, height: int | None = None, fps: int | None = None,
                flip: str = "none", give_up_after: float | None = 30.0, log: Callable[[str], None] = print,
                stall_timeout: float = DEFAULT_STALL_TIMEOUT, realtime: bool = False):
    """Open a source from its URI (see the module docstring). `realtime`: play a video file at its
    frame rate, dropping the frames the app has no time for, as a live camera would."""
    if not stall_timeout > 0:
        raise ConfigError(f"the stall timeout must be a positive number of seconds, got {stall_timeout!r}")
    if flip not in _FLIPS:
        raise ConfigError(f"flip must be one of {', '.join(_FLIPS)}, got {flip!r}")
    text = str(uri)
    if text.startswith("csi://"):
        if not gstreamer_available():
            raise SourceError("csi:// needs OpenCV built with GStreamer (JetPack's OpenCV has it; pip's opencv-python "
                              "does not). On a Jetson: `pip uninstall opencv-python opencv-python-headless` and use "
                              "the system's python3-opencv.")
        sensor = int(text[len("csi://"):] or 0)
        pipeline = csi_pipeline(sensor, width or 1280, height or 720, fps or 30, _FLIPS[flip])
        return LiveSource(lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER), f"CSI camera {sensor}",
                          give_up_after=give_up_after, log=log)  # nvvidconv flips: no second flip
    if text.startswith("v4l2://") or text.isdigit():
        device = int(text) if text.isdigit() else text[len("v4l2://"):]

        def open_v4l2() -> cv2.VideoCapture:
            capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                (cv2.CAP_PROP_FPS, fps)):
                if value:
                    capture.set(prop, value)
            return capture

        if isinstance(device, str) and not Path(device).exists():
            raise SourceError(f"{device}: no such camera device (is it plugged in? `ls /dev/video*`)")
        return LiveSource(open_v4l2, f"camera {device}", flip=flip, give_up_after=give_up_after, log=log)
    if text.split("://", 1)[0] in NETWORK_SCHEMES:
        # FFmpeg's own network timeout is ~30 s: a stream that stays open but sends nothing would go
        # unnoticed that long per stall. These bound opening and every read by the stall timeout.
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(stall_timeout * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(stall_timeout * 1000)]
        return LiveSource(lambda: cv2.VideoCapture(text, cv2.CAP_FFMPEG, timeouts), text, flip=flip,
                          give_up_after=give_up_after, log=log, retry_at_start=True)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageSource(sorted(p for p in path.iterdir() if is_image_file(p)), flip, fps or 30.0)
    if not path.exists():
        raise SourceError(f"{text}: no such file, folder or stream URI (csi://0, v4l2:///dev/video0, 0, rtsp://..., "
                          "video.mp4, image.jpg, folder/)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], flip, fps or 30.0)
    return RealtimeFileSource(path, flip) if realtime else FileVideoSource(path, flip)
