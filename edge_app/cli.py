"""`edge_app`: real-time localization on a camera, stream, video or images."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import EXIT_OUTPUT_FAILED, EXIT_SOURCE_LOST, number, run_cli
from runtime.config_cli import command_parser, option, parse_command
from runtime.backends.onnxruntime_backend import DEFAULT_SPINNING
from runtime.errors import ConfigError

from .app import MODEL_SERVER_LOST, AppConfig, EdgeApp
from .camera_config import camera_configs, camera_list
from .multi import DEFAULT_INFERENCE_THREADS, DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS, BatchSettings, MultiCameraApp

EXAMPLES = """sources (--source):  csi://0 | v4l2:///dev/video0 | 0 | rtsp://host/path | http://host/stream.mjpg |
                     video.mp4 | image.jpg | folder/
outputs (--output, repeatable):  display://0 | out.mp4 | out.mkv | out.avi | frames/ |
                                 http://127.0.0.1:8080 (MJPEG preview)

examples:
  edge_app --model model.onnx --source video.mp4 --output out.mp4 --json -
  edge_app --model model.onnx --cameras cameras.yaml --web http://127.0.0.1:8080
  edge_app --model model.onnx --source a.mp4 --source rtsp://cam2/live --json "runs/{camera}.jsonl" --web :8080
  edge_app --model model.fp16.engine --source csi://0 --output display://0 --width 1280 --height 720
  edge_app --model model.int8.onnx --source rtsp://drone.local/live --output http://0.0.0.0:8080 --headless
  edge_app --model model.onnx --source /dev/video0 --overlay heatmap --output http://127.0.0.1:8080
  edge_app --model triton://gpu-server:8001/birds --source rtsp://cam.local/live --json -
  edge_app --model model.onnx --source rtsp://cam.local/live --camera feeder --mqtt mqtt://127.0.0.1 \\
      --webhook http://127.0.0.1:1880/spamcam --snapshots snaps/ --clips clips/ --zone "door:0,300 200,300 200,480 0,480"

Several cameras (--cameras FILE, or --source repeated) share one model: frames of different cameras
are batched into one inference call (--max-batch, --max-wait-ms), and capture, inference and each
camera's post-processing and outputs run on their own threads. A camera entry sets any of name,
source, width, height, fps, flip, realtime, min_confidence, overlap_iou, overlay, zones, outputs,
json, event_log, snapshots, clips, output_fps, reconnect_timeout, stall_timeout, max_frames and
update_interval; the rest is shared. A shared path must contain {camera}. --web serves a page with
every camera, and Prometheus metrics at /metrics.

Tracking is on by default (JSON lines carry track_id). Events (new / update / end per tracked object)
go to --mqtt, --webhook and --event-log; --snapshots and --clips keep each event's best frame (with
the CAM heat map) and an H.264 clip. Sinks run off the frame loop: a dead broker costs messages, not frames.

Ctrl-C or SIGTERM stops after the current frame; the video file is finalised and every JSON line
already produced is on disk. An output whose write fails (disk full, folder gone) is stopped at its
first failed write and finished, with its path and the cause said; the others go on, and the run
stops when none is left. JSON lines are written whole or not at all. A killed run (kill -9, power
loss) leaves a playable .mkv, and a playable .mp4 where PyAV is installed (fragmented MP4; pip install
'spamcam[video]'); without PyAV an .mp4 plays only once closed. docs/reliability.md has the details.

exit codes: 0 done; 2 bad input (model, source, options, an output that cannot be written); 3 a live
source, or a triton:// model's server, was lost; 4 an output failed, so not everything asked for was written (the summary's
failed_outputs says which and why); 1 a bug (SPAMCAM_TRACEBACK=1 shows where).
"""


@dataclass
class EdgeAppCommand(AppConfig):
    """edge_app's options: the model and how it runs, the cameras, and everything `AppConfig` says."""

    model: str = option("", "model.onnx, model.int8.onnx, a TensorRT model.engine, or triton://HOST:PORT/MODEL",
                        required=True, metavar="MODEL")
    headless: bool = option(False, "refuse display:// outputs (for servers and drones)")
    threads: int | None = option(None, "ONNX Runtime intra-op threads", type=number(int, minimum=1))
    ort_spinning: bool = option(DEFAULT_SPINNING, "let ONNX Runtime's worker threads spin between runs (faster "
                                "inference, less CPU for everything else; docs/benchmarks.md measures both)")
    cameras: list[dict] = option(help="the cameras, from a YAML file: a list of mappings whose keys are these options' "
                                 "names (name, source, outputs, json, min_confidence, zones, ...); in a --config file, "
                                 "the list itself", factory=list, type=camera_list, metavar="FILE", group="cameras")
    web: str | None = option(None, "serve the live page (every camera's preview, detections, FPS, latency) and "
                             "Prometheus /metrics here, e.g. http://127.0.0.1:8080", metavar="URL", group="cameras")
    max_batch: int = option(DEFAULT_MAX_BATCH, "frames of different cameras in one inference call, at most",
                            type=number(int, minimum=1), group="cameras")
    inference_threads: int = option(DEFAULT_INFERENCE_THREADS, "inference calls at once, the cameras split between them "
                                    "(0: auto — one per CPU core with ONNX Runtime, 1 with TensorRT)",
                                    type=number(int, minimum=0), group="cameras")
    max_wait_ms: float = option(DEFAULT_MAX_WAIT_MS, "after one camera's frame, how long to wait for the others' "
                                "before inferring", type=number(float, minimum=0), group="cameras")

    def __post_init__(self) -> None:
        super().__post_init__()
        camera_configs(self, self.cameras)  # every camera's values checked now: refused like a bad option


def build_parser():
    return command_parser(EdgeAppCommand, prog="edge_app", description="Run a spamcam model on live camera feeds, "
                          "streams, videos or images.", epilog=EXAMPLES)


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        if args.headless and any(o.startswith("display://") for o in args.outputs):
            raise ConfigError("--headless and a display:// output contradict each other")
        options = {}
        if args.model.endswith(".onnx"):
            options = {"spinning": args.ort_spinning, **({"threads": args.threads} if args.threads else {})}
        configs = camera_configs(args, args.cameras)
        if len(configs) == 1 and not args.web:
            summary = EdgeApp(args.model, configs[0], **options).run()  # SIGINT/SIGTERM end it cleanly
            lost = summary.stopped_by in ("source lost", MODEL_SERVER_LOST)
        else:
            app = MultiCameraApp(args.model, configs, web=args.web, **options,
                                 batch=BatchSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                                     inference_threads=args.inference_threads))
            summary = app.run()
            lost = bool(summary.lost_sources) or summary.stopped_by == MODEL_SERVER_LOST
        for path in summary.outputs:  # the settings beside each file and folder it wrote
            command.save_beside(path, folder=Path(path).is_dir())
        print(json.dumps({"summary": summary.to_dict()}), file=sys.stderr if args.json == "-" else sys.stdout)
        if summary.failed_outputs:
            return EXIT_OUTPUT_FAILED  # something asked for was not (fully) written: never report that as success
        return EXIT_SOURCE_LOST if lost else 0

    return run_cli("edge_app", work, interrupted="the outputs were closed")


if __name__ == "__main__":
    sys.exit(main())
