"""Video file outputs that stay playable when the run ends badly (kill -9, power loss, full disk).

A plain MP4 keeps its index (the moov atom) at the end, written on close: a camera killed mid-run
left 3.4 MB with 0 decodable frames. So:
- `.mp4` / `.mov` / `.m4v` are written as *fragmented* MP4 through PyAV (`pip install 'spamcam[video]'`):
  an empty index up front, then self-contained fragments of one second each; a killed run loses at
  most the last second (measured: 595 of 600 frames decodable after SIGKILL).
  Without PyAV they fall back to OpenCV's plain MP4, with a warning saying so.
- `.mkv` (OpenCV, MPEG-4 Part 2): Matroska clusters are self-contained, so it survives a kill without
  PyAV, less the last few seconds that OpenCV's writer still buffers (measured after SIGKILL: 616 of
  690 frames decodable, and 169 of 222).
- `.avi` (OpenCV, MJPEG): for tools that want one JPEG per frame; its index is also written on close.

Every writer stops *before* the disk is full (`VIDEO_RESERVE_BYTES` left), so that it can still be
finalised, and raises OutputError saying so; the app then closes it and goes on with the other outputs.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from .outputs import OutputError

__all__ = ["VIDEO_OUTPUT_SUFFIXES", "VIDEO_RESERVE_BYTES", "VideoOutputError", "open_video_output",
           "FragmentedMp4Output", "OpenCvVideoOutput", "pyav_available", "X264_PRESETS", "DEFAULT_X264_PRESET"]

VIDEO_RESERVE_BYTES = 4 << 20  # free space a video keeps for its last fragment or index, written on close
MP4_SUFFIXES = (".mp4", ".mov", ".m4v")
VIDEO_OUTPUT_SUFFIXES = (*MP4_SUFFIXES, ".mkv", ".avi")
_OPENCV_FOURCC = {".avi": "MJPG", ".mkv": "mp4v", ".mp4": "mp4v", ".mov": "mp4v", ".m4v": "mp4v"}
# One fragment per second: a kill loses at most that; shorter fragments cost size and seekability.
_FRAGMENT_SECONDS = 1.0
# x264's presets, fastest first (--video-preset). The default is the fastest: on two cores a
# 640x480 frame took 0.85 ms of CPU against 1.6-2.1 ms with veryfast, for files 1.6-1.7x larger at
# the same crf; docs/benchmarks.md. A camera's CPU goes to the model.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
DEFAULT_X264_PRESET = "ultrafast"


class VideoOutputError(OutputError):
    """A video file cannot be opened or written."""


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _check_space(path: Path, frames: int) -> None:
    free = shutil.disk_usage(path.parent).free
    if free < VIDEO_RESERVE_BYTES:
        raise VideoOutputError(f"{path}: only {free / 2**20:.1f} MB left on its disk; stopped after {frames} "
                               "frames so that the video can still be finalised and played")


class OpenCvVideoOutput:
    """OpenCV's writer (MP4 / MKV with MPEG-4 Part 2, AVI with MJPEG); sized by the first frame.

    OpenCV reports no failed write, so the free-space check before each frame is what keeps a full
    disk from cutting the file off before its index."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*_OPENCV_FOURCC[self.path.suffix.lower()])
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, float(self.fps), self.size)
            if not self.writer.isOpened():
                raise VideoOutputError(f"{self.path}: cannot write video (is the folder writable?)")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)  # a source that changed resolution mid-stream
        _check_space(self.path, self.frames)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the container's index: the file is playable after this
            self.writer = None


class FragmentedMp4Output:
    """Fragmented MP4 (H.264 where the PyAV build has an encoder for it, else MPEG-4 Part 2) via PyAV.

    A keyframe every `_FRAGMENT_SECONDS` and `frag_keyframe+empty_moov`: each fragment is complete on
    disk once written, so the file plays up to the last one whatever ends the run. PyAV raises on a
    failed write (unlike OpenCV), which becomes an OutputError naming the file."""

    def __init__(self, path: Path, fps: float, preset: str = DEFAULT_X264_PRESET) -> None:
        self.path, self.fps, self.preset = path, float(fps), preset
        self.container = None
        self.stream = None
        self.frames = 0
        self.size: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> None:
        import av

        self.size = (width - width % 2, height - height % 2)  # 4:2:0 chroma needs even sides
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
        self.container = av.open(str(self.path), mode="w", format="mp4", options=options)
        codec, codec_options = _encoder(self.preset)
        rate = max(1, round(self.fps))
        self.stream = self.container.add_stream(codec, rate=rate, options=codec_options)
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.gop_size = max(1, round(rate * _FRAGMENT_SECONDS))

    def write(self, image: np.ndarray) -> None:
        import av

        try:
            if self.container is None:
                self._open(image.shape[1], image.shape[0])
            if (image.shape[1], image.shape[0]) != self.size:
                image = cv2.resize(image, self.size)
            _check_space(self.path, self.frames)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (OSError, av.FFmpegError) as error:
            if isinstance(error, VideoOutputError):
                raise
            raise VideoOutputError(f"{self.path}: {getattr(error, 'strerror', None) or error}; "
                                   f"{self.frames} frames were written and stay playable") from error
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        import av

        container, self.container = self.container, None
        try:
            for packet in self.stream.encode(None):  # the encoder's delayed frames
                container.mux(packet)
        except (OSError, av.FFmpegError):
            pass  # the disk is full or gone: the fragments already written are what there is
        finally:
            try:
                container.close()
            except (OSError, av.FFmpegError):
                pass


def _encoder(preset: str) -> tuple[str, dict[str, str]]:
    """The best encoder this PyAV build has: x264 (small files), else FFmpeg's MPEG-4 Part 2."""
    import av

    for name, options in (("libx264", {"preset": preset, "tune": "zerolatency"}), ("mpeg4", {"qscale": "3"})):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # av.codec.codec.UnknownCodecError, a ValueError in older PyAV
            continue
        return name, options
    raise VideoOutputError("this PyAV build has no H.264 or MPEG-4 encoder; write .mkv or .avi instead")


_warned_plain_mp4 = False


def open_video_output(path: Path, fps: float, preset: str = DEFAULT_X264_PRESET):
    """The writer for `path`'s suffix (see the module docstring); `preset`: x264's, for MP4."""
    global _warned_plain_mp4
    suffix = path.suffix.lower()
    if suffix not in VIDEO_OUTPUT_SUFFIXES:
        raise VideoOutputError(f"{path}: unknown video type; use {', '.join(VIDEO_OUTPUT_SUFFIXES)}")
    if suffix in MP4_SUFFIXES:
        if pyav_available():
            return FragmentedMp4Output(path, fps, preset)
        if not _warned_plain_mp4:
            _warned_plain_mp4 = True
            print(f"edge_app: warning: {path}: without PyAV this MP4 is only playable once closed (a kill -9 or "
                  "power loss leaves no playable frame); `pip install 'spamcam[video]'` or write .mkv",
                  file=sys.stderr, flush=True)
    return OpenCvVideoOutput(path, fps)
