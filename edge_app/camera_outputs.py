"""Everything one camera's results go to: video outputs, JSON lines, tracking and events.

One definition for the single-camera loop (edge_app/app.py) and the multi-camera app
(edge_app/multi.py): an output whose write fails is stopped at its first failed write, finished and
reported; the others go on, and `alive` turns False once every output asked for has failed.
"""
from __future__ import annotations

from typing import Callable

from runtime.localizer import FrameResult, Localizer

from .event_pipeline import EventPipeline
from .outputs import JsonLines, OutputError, open_output
from .overlay import annotate
from .sources import Frame

__all__ = ["CameraOutputs"]


class CameraOutputs:
    """Opened with the camera's config (AppConfig); `deliver` one frame's result; `close` once."""

    def __init__(self, config, localizer: Localizer, *, fps: float, log: Callable[[str], None],
                 on_quit: Callable[[], None] | None = None, prefix: str = "") -> None:
        self.config, self.localizer, self.log, self.prefix = config, localizer, log, prefix
        self.failed: dict[str, str] = {}  # output -> why it stopped being written
        self.outputs: list = []
        self.uris: list[str] = []  # parallel to `outputs` while some are dropped
        self.json_lines: JsonLines | None = None
        self.pipeline: EventPipeline | None = None
        self.events: dict = {}
        try:
            for uri in config.outputs:
                self.outputs.append(open_output(uri, fps=fps, http_host=config.http_host, on_quit=on_quit,
                                                video_preset=config.video_preset))
                self.uris.append(uri)
                if hasattr(self.outputs[-1], "url"):
                    log(f"edge_app: {prefix}preview at {self.outputs[-1].url}")
            self.json_lines = JsonLines(config.json) if config.json else None
            if config.track:
                self.pipeline = EventPipeline(config, localizer.classes, localizer.params, fps=fps, log=log)
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> bool:
        """False once every output asked for has failed: nothing this camera produces is kept."""
        return bool(self.outputs or self.json_lines or not self.failed)

    def deliver(self, frame: Frame, result: FrameResult, status: str = "", camera: str | None = None):
        """Track, send events, draw and write one frame's result. Returns (track IDs, annotated image or
        None when no video output needed one)."""
        track_ids = (self.pipeline.on_frame(frame.image, frame.index, frame.timestamp, result)
                     if self.pipeline else None)
        annotated = None
        if self.outputs:
            annotated = self.annotate(frame, result, status, track_ids)
            for uri, output in list(zip(self.uris, self.outputs)):
                try:
                    output.write(annotated)
                except OutputError as error:
                    self._drop(uri, error, output)
        if self.json_lines:
            record = {**({"camera": camera} if camera else {}), "frame": frame.index,
                      "timestamp": round(frame.timestamp, 4), **result.to_dict(self.localizer.classes)}
            for detection, track_id in zip(record["detections"], track_ids or ()):
                detection["track_id"] = track_id
            try:
                self.json_lines.write_record(record)
            except OutputError as error:
                self._report(self.config.json, error)
                self.json_lines.close()
                self.json_lines = None
        return track_ids, annotated

    def annotate(self, frame: Frame, result: FrameResult, status: str, track_ids):
        return annotate(frame.image, result, self.localizer.classes, self.localizer.params,
                        overlay=self.config.overlay, status=status, track_ids=track_ids)

    def _report(self, uri: str, error: Exception) -> None:
        self.log(f"edge_app: error: {self.prefix}stopped writing {uri}: {error}")
        self.failed[uri] = str(error)

    def _drop(self, uri: str, error: OutputError, output) -> None:
        """Stop writing one output after its first failed write, finish it, and say so."""
        self._report(uri, error)
        index = self.outputs.index(output)
        self.outputs.pop(index)
        self.uris.pop(index)
        try:
            output.close()  # finalise what it has (a video's index, say)
        except Exception as close_error:
            self.log(f"edge_app: {self.prefix}closing {uri} after the failure failed too: {close_error}")

    def close(self) -> None:
        """End the open events, finish the clips, drain the sinks, close every output; errors are
        reported and the rest is still closed."""
        if self.pipeline is not None:
            try:
                self.events = self.pipeline.close()
                self.failed.update(self.pipeline.failed_outputs())  # a lost clip is never reported as written
            except Exception as error:
                self.log(f"edge_app: {self.prefix}closing the events failed: {error}")
            self.pipeline = None
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:  # keep closing the others; report this one
                self.log(f"edge_app: {self.prefix}closing {type(output).__name__} failed: {error}")
        self.outputs = []
        if self.json_lines:
            self.json_lines.close()
            self.json_lines = None

    def written(self) -> list[str]:
        """What this camera was asked to write and did write in full."""
        config = self.config
        asked = [*config.outputs, *([config.json] if config.json and config.json != "-" else []),
                 *(path for _, path in config.event_outputs())]
        return [o for o in asked if o not in self.failed]
