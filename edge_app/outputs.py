"""Where annotated frames and detections go: a window, a video file, a folder of images, an MJPEG
preview over HTTP, JSON lines (video files: edge_app/video_output.py). Each output finishes what it wrote on `close()`, which the app
always reaches (also on Ctrl-C / SIGTERM), so a video stays playable and no JSON line is half written.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from runtime.cli import silence_stdout
from runtime.errors import WriteError
from runtime.output_paths import writable_folder

__all__ = ["OutputError", "ImageFolderOutput", "DisplayOutput", "MjpegServer", "JsonLines",
           "open_output", "writable_frames_folder"]


class OutputError(WriteError):
    """An output cannot be opened or written; the run stops it and says so (exit 4)."""


def write_failure(path: Path, error: BaseException | None = None) -> str:
    """Why a write to `path` failed, in words: the OS error where there is one, else what the disk says."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    folder = path if path.is_dir() else path.parent
    try:
        if shutil.disk_usage(folder).free < 1 << 20:
            return "no space left on the device"
    except OSError:
        pass
    return "the write failed (disk full, read-only or removed folder?)"


def writable_frames_folder(folder: str | Path) -> Path:
    """A folder output (one JPEG per frame) that can be written, made if missing."""
    try:
        return writable_folder(folder, "--output")
    except WriteError as error:
        reason = write_failure(Path(folder), error.__cause__) if error.__cause__ else str(error)  # a file in the way
        raise OutputError(f"--output {folder}: cannot write frames there ({reason})") from error


class ImageFolderOutput:
    """One JPEG per frame. Every write is checked: a failed one leaves no partial file and raises."""

    def __init__(self, folder: Path) -> None:
        writable_frames_folder(folder)
        self.folder, self.frames = folder, 0

    def write(self, image: np.ndarray) -> None:
        path = self.folder / f"frame_{self.frames:06d}.jpg"
        if not cv2.imwrite(str(path), image):
            cause = write_failure(path)
            path.unlink(missing_ok=True)  # a truncated JPEG would pass for a frame
            raise OutputError(f"{path}: {cause}")
        self.frames += 1

    def close(self) -> None:
        pass


class DisplayOutput:
    """An OpenCV window; closing it (or pressing q / Esc) asks the app to stop."""

    def __init__(self, title: str = "spamcam", on_quit: Callable[[], None] | None = None) -> None:
        self.title, self.on_quit = title, on_quit
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as error:
            raise OutputError("display:// needs an OpenCV with GUI support and a screen (pip's opencv-python-headless "
                              "has none: install opencv-python, or use JetPack's OpenCV); or use --headless, a video "
                              f"file, or the HTTP preview ({error.msg.strip() if hasattr(error, 'msg') else error})") from error

    def write(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) and self.on_quit:
            self.on_quit()

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class MjpegServer:
    """MJPEG over HTTP (multipart/x-mixed-replace): open http://HOST:PORT/ in a browser or VLC.
    Bound to 127.0.0.1 unless asked otherwise: a camera feed is not published by accident."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80) -> None:
        self.quality = quality
        self._frame: bytes | None = None
        self._condition = threading.Condition()
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: one line per request is noise on a camera
                pass

            def do_GET(self) -> None:
                if self.path not in ("/", "/stream.mjpg", "/frame.jpg"):
                    self.send_error(404)
                    return
                if self.path == "/frame.jpg":
                    data = server.wait_frame(5.0)
                    if data is None:
                        self.send_error(503, "no frame yet")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                last = None
                try:
                    while not server._closed:
                        data = server.wait_frame(1.0, newer_than=last)
                        if data is None:
                            continue
                        last = data
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/"

    def wait_frame(self, timeout: float, newer_than: bytes | None = None) -> bytes | None:
        with self._condition:
            if self._frame is None or self._frame is newer_than:
                self._condition.wait(timeout)
            return None if self._frame is newer_than else self._frame

    def write(self, image: np.ndarray) -> None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._condition:
                self._frame = encoded.tobytes()
                self._condition.notify_all()

    def close(self) -> None:
        self._closed = True
        with self._condition:
            self._condition.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()


_STDOUT_LOCK = threading.Lock()


class JsonLines:
    """One JSON object per frame, written whole or not at all: each line goes to the file in one
    unbuffered write, and when the disk refuses part of it the file is cut back to the last complete
    line, so a consumer (or a crash, or a full disk) never sees half a record."""

    def __init__(self, target: str, option: str = "--json") -> None:
        self.target, self.records, self.option = target, 0, option
        self._fd: int | None = None
        if target != "-":
            path = Path(target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as error:
                raise OutputError(f"{option} {target}: cannot write there ({write_failure(path, error)})") from error
        self._good = 0  # bytes of complete lines

    def write_record(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if self._fd is None:
            try:
                with _STDOUT_LOCK:  # several cameras' lines to one stdout: whole lines, never interleaved
                    sys.stdout.write(line.decode())
                    sys.stdout.flush()
            except (BrokenPipeError, OSError) as error:  # `edge_app --json - | head`: the reader went away
                silence_stdout()  # so that Python's own flush at exit does not print a traceback either
                raise OutputError(f"{self.option} -: standard output was closed ({error.strerror or error}) after "
                                  f"{self.records} lines") from error
            self.records += 1
            return
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            try:
                os.ftruncate(self._fd, self._good)  # drop the partial line
                os.lseek(self._fd, self._good, os.SEEK_SET)
            except OSError:
                pass
            raise OutputError(f"{self.option} {self.target}: {write_failure(Path(self.target), error)} after "
                              f"{self.records} complete lines") from error
        self._good += len(line)
        self.records += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def local_path(uri: str) -> Path | None:
    """The file or folder a source or output URI names on this machine, fully resolved (symlinks,
    `..`, `~`); None for cameras, streams, displays and servers."""
    text = str(uri)
    if text == "-" or text.isdigit() or ("://" in text and not text.startswith("file://")):
        return None
    return Path(text.removeprefix("file://")).expanduser().resolve()


def refuse_clashing_paths(source: str, outputs: list[str], json_path: str | None,
                          others: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse, before anything is opened, outputs that would overwrite the source or each other:
    `--output` naming the input video truncated it (1.66 MB -> 158 KB) while it was still being read.
    `others` are more (option, path) pairs: the event log, snapshot and clip folders."""
    named = {"source": local_path(source)}
    for label, uri in [*((f"--output {o}", o) for o in outputs), *([(f"--json {json_path}", json_path)] if json_path else []),
                       *((f"{option} {path}", path) for option, path in others)]:
        path = local_path(uri)
        if path is None:
            continue
        folder_output = label.startswith("--output") and not path.suffix  # writes frame_NNNNNN.jpg files there
        for other, taken in named.items():
            if taken is not None and (path == taken or (folder_output and path in taken.parents)):
                what = "the source" if other == "source" else other
                where = "" if path == taken else f", a folder that holds {taken.name}"
                raise OutputError(f"{label} is {what} ({path}{where}): writing there would destroy what is read or "
                                  "written; choose another path")
        named[label] = path


def open_output(uri: str, *, fps: float, http_host: str = "127.0.0.1", on_quit: Callable[[], None] | None = None,
                video_preset: str | None = None):
    """display://0 | http://[HOST]:PORT | file.mp4/.avi | folder/ (see the module docstring);
    `video_preset`: x264's for MP4 files (None: video_output's default)."""
    if uri.startswith("display://"):
        return DisplayOutput(on_quit=on_quit)
    if uri.startswith("http://") or uri.startswith("mjpeg://"):
        rest = uri.split("://", 1)[1].strip("/")
        host, _, port = rest.rpartition(":")
        try:
            return MjpegServer(host or http_host, int(port or 8080))
        except OSError as error:
            raise OutputError(f"{uri}: cannot serve the preview there ({error})") from error
    from .video_output import DEFAULT_X264_PRESET, VIDEO_OUTPUT_SUFFIXES, open_video_output  # needs OutputError

    path = Path(uri).expanduser()
    if path.suffix.lower() in VIDEO_OUTPUT_SUFFIXES:
        writable_folder(path.parent, "--output")
        return open_video_output(path, fps, video_preset or DEFAULT_X264_PRESET)
    if path.suffix:
        raise OutputError(f"{uri}: unknown output; use display://0, http://127.0.0.1:8080, a video file "
                          f"({', '.join(VIDEO_OUTPUT_SUFFIXES)}) or a folder")
    return ImageFolderOutput(path)
