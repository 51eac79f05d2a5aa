"""Where a clip's video comes from, and the files clips are written to.

- `H264Stream`: every frame, as it comes, into one continuous H.264 stream (PyAV's libx264); the
  clip thread keeps its packets in a ring and a clip copies them.
- `FilePackets`: a video file's own H.264 packets, read as far as the app has come; nothing encoded.
- `JpegStream`: without PyAV >= 17, a JPEG per frame, decoded into OpenCV's MPEG-4 Part 2.

Each turns frames into `EncodedFrame`s (`encode`, `flush`) and opens the `ClipFile` they go into
(`clip_file`). The recorder (edge_app/clips.py) decides which frames go into which clip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .video_output import DEFAULT_X264_PRESET, pyav_available

__all__ = ["EncodedFrame", "H264Stream", "FilePackets", "JpegStream", "ClipFile", "PacketClipFile", "OpenCvClipFile",
           "pyav_muxes_packets", "KEYFRAME_SECONDS"]

_JPEG_QUALITY = 85
# With the preset (--video-preset): one thread, no B-frames (packets in display order).
_H264_OPTIONS = {"crf": "26", "bframes": "0"}
KEYFRAME_SECONDS = 1.0  # a clip starts at a keyframe: its pre-roll is up to this much longer
_BROWSER_PIX_FMTS = ("yuv420p", "yuvj420p")  # H.264 that browsers decode: 4:2:0, 8 bits


def pyav_muxes_packets() -> bool:
    """PyAV >= 17: it muxes packets without an encoder of their own (`add_mux_stream`), which clips need."""
    if not pyav_available():
        return False
    from av.container.output import OutputContainer

    return hasattr(OutputContainer, "add_mux_stream")


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame in the ring: an H.264 packet, or a JPEG without PyAV."""

    time: float  # its frame time (decode time for packets, which is monotonic)
    data: bytes
    keyframe: bool  # a clip can start here
    pts: int | None = None  # a packet's timestamps in its stream's time base
    dts: int | None = None


class H264Stream:
    """Every frame, as it comes, into one continuous H.264 stream (PyAV's libx264).

    The ring then holds packets, and a clip is a copy of its packets from a keyframe: no frame is
    encoded twice, and nothing is decoded. JPEG-encoding every frame for the ring and H.264-encoding
    the recordings' frames again cost 2.2 ms of CPU per 640x480 frame; with the default preset this
    costs 0.85 (docs/benchmarks.md)."""

    def __init__(self, fps: float, preset: str = DEFAULT_X264_PRESET) -> None:
        self.rate, self.preset = Fraction(fps).limit_denominator(1000), preset
        self.shape: tuple[int, ...] | None = None  # the frames' shape (a new one needs a new stream)
        self._context = None
        self._times: dict[int, float] = {}  # pts -> frame time, until its packet comes out
        self._count = 0

    def encode(self, image: np.ndarray, frame_time: float) -> list[EncodedFrame]:
        import av

        if self._context is None:
            self._open(image)
        height, width = image.shape[:2]
        image = np.ascontiguousarray(image[: height - height % 2, : width - width % 2])  # yuv420p: even sizes
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self._count
        self._times[self._count] = frame_time
        self._count += 1
        return self._units(self._context.encode(frame))

    def flush(self) -> list[EncodedFrame]:
        """The packets still inside the encoder; it takes no frame after this."""
        if self._context is None:
            return []
        units, self._context = self._units(self._context.encode(None)), None
        return units

    def _units(self, packets) -> list[EncodedFrame]:
        return [EncodedFrame(self._times.pop(packet.pts), bytes(packet), packet.is_keyframe, packet.pts, packet.dts)
                for packet in packets]

    def _open(self, image: np.ndarray) -> None:
        import av

        height, width = image.shape[:2]
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = width - width % 2, height - height % 2
        context.pix_fmt = "yuv420p"  # what browsers decode
        context.time_base, context.framerate = 1 / self.rate, self.rate
        context.gop_size = max(1, round(float(self.rate) * KEYFRAME_SECONDS))
        context.thread_count = 1  # one core: the frame loop has the other
        context.options = {"preset": self.preset, **_H264_OPTIONS}
        context.open()
        self._context, self.shape, self._size = context, image.shape, (context.width, context.height)

    def clip_file(self, path: Path) -> "PacketClipFile":
        width, height = self._size

        def add_stream(container):
            stream = container.add_mux_stream("h264", rate=self.rate, width=width, height=height)
            stream.time_base = 1 / self.rate
            return stream

        return PacketClipFile(path, add_stream, 1 / self.rate)


class FilePackets:
    """A video file's own H.264 packets, read as far as the frames the app has reached: a clip of a
    recorded video is a copy of the recording, at its quality, encoding nothing (as Frigate records
    cameras). Only for files whose H.264 browsers play; others are encoded."""

    shape = None  # the file's frames keep their size

    def __init__(self, container, stream) -> None:
        self._container, self._stream = container, stream
        self._packets = container.demux(stream)
        self._peeked = None  # read, but beyond the frame the app is at
        self._origin = stream.start_time or 0  # the first frame's pts: frame time 0
        self._time_base = stream.time_base

    @classmethod
    def open(cls, path: Path) -> "FilePackets | None":
        """None where the file is not H.264 in 4:2:0 (what browsers decode) or PyAV cannot read it."""
        if not pyav_muxes_packets():
            return None
        import av

        try:
            container = av.open(str(path))
        except (av.FFmpegError, OSError):
            return None
        video = container.streams.video
        if not video or video[0].codec_context.name != "h264" or video[0].codec_context.pix_fmt not in _BROWSER_PIX_FMTS:
            container.close()
            return None
        return cls(container, video[0])

    def encode(self, image: np.ndarray | None, frame_time: float) -> list[EncodedFrame]:
        """The packets up to this frame (by decode time); `image` is not needed."""
        units = []
        while True:
            packet = self._peeked if self._peeked is not None else next(self._packets, None)
            self._peeked = None
            if packet is None:
                return units
            if packet.dts is None:  # the demuxer's final empty packet
                continue
            time = float((packet.dts - self._origin) * self._time_base)
            if time > frame_time + 1e-6:
                self._peeked = packet
                return units
            units.append(EncodedFrame(time, bytes(packet), packet.is_keyframe, packet.pts, packet.dts))

    def flush(self) -> list[EncodedFrame]:
        return []  # nothing beyond the last frame the app processed

    def close(self) -> None:
        self._container.close()

    def clip_file(self, path: Path) -> "PacketClipFile":
        return PacketClipFile(path, lambda container: container.add_stream_from_template(self._stream), self._time_base)


class JpegStream:
    """Without PyAV >= 17: each frame as a JPEG (~30 KB per 640x480 frame instead of 900 KB raw); every one
    is a keyframe, and a clip decodes them into OpenCV's MPEG-4 Part 2."""

    def __init__(self, fps: float) -> None:
        self.fps, self.shape = fps, None

    def encode(self, image: np.ndarray, frame_time: float) -> list[EncodedFrame]:
        self.shape = image.shape
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        return [EncodedFrame(frame_time, jpeg.tobytes(), True)] if ok else []

    def flush(self) -> list[EncodedFrame]:
        return []

    def clip_file(self, path: Path) -> "OpenCvClipFile":
        return OpenCvClipFile(path, self.fps)


class ClipFile:
    """A clip being written as `<name>.part`, renamed into place when complete."""

    def __init__(self, path: Path) -> None:
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.frames = 0

    def write(self, unit: EncodedFrame) -> None:
        self._write(unit)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and rename it into place; None when no frame came."""
        if not self.frames:
            return None
        self._close()
        os.replace(self.part, self.path)
        return self.path

    def abandon(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 — already failing; the .part is removed below
            pass
        self.part.unlink(missing_ok=True)

    def _write(self, unit: EncodedFrame) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class PacketClipFile(ClipFile):
    """H.264 packets copied into an MP4 with the index up front (`+faststart`), their timestamps
    shifted so that the clip starts at 0."""

    def __init__(self, path: Path, add_stream: Callable, time_base: Fraction) -> None:
        super().__init__(path)
        self._add_stream, self._time_base = add_stream, time_base
        self._container = self._stream = None
        self._origin = 0

    def _write(self, unit: EncodedFrame) -> None:
        import av

        if self._container is None:
            self._container = av.open(str(self.part), "w", format="mp4", options={"movflags": "+faststart"})
            self._stream = self._add_stream(self._container)
            self._origin = unit.dts
        packet = av.Packet(unit.data)
        packet.dts = unit.dts - self._origin
        packet.pts = None if unit.pts is None else unit.pts - self._origin
        packet.time_base, packet.stream = self._time_base, self._stream
        packet.is_keyframe = unit.keyframe
        self._container.mux(packet)

    def _close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            container.close()


class OpenCvClipFile(ClipFile):
    def __init__(self, path: Path, fps: float) -> None:
        super().__init__(path)
        self.fps, self._writer = fps, None

    def _write(self, unit: EncodedFrame) -> None:
        image = cv2.imdecode(np.frombuffer(unit.data, np.uint8), cv2.IMREAD_COLOR)
        if self._writer is None:
            height, width = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*"mp4v"), float(self.fps), (width, height))
        self._writer.write(image)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()
