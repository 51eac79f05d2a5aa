"""`edge_app`: real-time localization on a camera, stream, video or images."""
from __future__ import annotations

import argparse
import json
import sys

from runtime.cli import EXIT_OUTPUT_FAILED, EXIT_SOURCE_LOST, number, run_cli
from runtime.confidence import DEFAULT_MIN_CONFIDENCE, DEFAULT_OVERLAP_IOU
from runtime.errors import ConfigError
from runtime.preprocess import RESIZE_MODES

from .app import AppConfig, EdgeApp
from .overlay import OVERLAYS
from .sources import DEFAULT_STALL_TIMEOUT, FLIPS

EXAMPLES = """sources (--source):  csi://0 | v4l2:///dev/video0 | 0 | rtsp://host/path | http://host/stream.mjpg |
                     video.mp4 | image.jpg | folder/
outputs (--output, repeatable):  display://0 | out.mp4 | out.mkv | out.avi | frames/ |
                                 http://127.0.0.1:8080 (MJPEG preview)

examples:
  edge_app --model model.onnx --source video.mp4 --output out.mp4 --json -
  edge_app --model model.fp16.engine --source csi://0 --output display://0 --width 1280 --height 720
  edge_app --model model.int8.onnx --source rtsp://drone.local/live --output http://0.0.0.0:8080 --headless
  edge_app --model model.onnx --source /dev/video0 --overlay heatmap --output http://127.0.0.1:8080

Ctrl-C or SIGTERM stops after the current frame; the video file is finalised and every JSON line
already produced is on disk. An output whose write fails (disk full, folder gone) is stopped at its
first failed write and finished, with its path and the cause said; the others go on, and the run
stops when none is left. JSON lines are written whole or not at all. A killed run (kill -9, power
loss) leaves a playable .mkv, and a playable .mp4 where PyAV is installed (fragmented MP4; pip install
'spamcam[video]'); without PyAV an .mp4 plays only once closed. docs/reliability.md has the details.

exit codes: 0 done; 2 bad input (model, source, options, an output that cannot be written); 3 a live
source was lost; 4 an output failed, so not everything asked for was written (the summary's
failed_outputs says which and why); 1 a bug (SPAMCAM_TRACEBACK=1 shows where).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge_app", description="Run a spamcam model on live camera feeds, streams, "
                                "videos or images.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model.onnx, model.int8.onnx or a TensorRT model.engine")
    p.add_argument("--source", required=True, help="input URI (see below)")
    p.add_argument("--output", action="append", default=[], help="output URI (repeatable)")
    p.add_argument("--headless", action="store_true", help="refuse display:// outputs (for servers and drones)")
    p.add_argument("--json", help="JSON lines per frame to this file, or - for stdout")
    p.add_argument("--overlay", default="boxes", choices=OVERLAYS, help="draw boxes only, or also the CAM heat map / "
                   "back-projected area")
    p.add_argument("--width", type=number(int, minimum=1), help="capture width (cameras)")
    p.add_argument("--height", type=number(int, minimum=1), help="capture height (cameras)")
    p.add_argument("--fps", type=number(int, minimum=1), help="capture frame rate (cameras)")
    p.add_argument("--flip", default="none", choices=FLIPS)
    p.add_argument("--resize", choices=RESIZE_MODES, help="how frames fit the network (default: the model's)")
    p.add_argument("--conf", type=number(float, minimum=0), default=DEFAULT_MIN_CONFIDENCE,
                   help="keep boxes whose confidence, P(present) of the instance from the model's own output layer, "
                   "is at least this (default: %(default)s; 0 keeps every peak above t_c, the paper's rule)")
    p.add_argument("--overlap-iou", type=number(float, minimum=0), default=DEFAULT_OVERLAP_IOU,
                   help="of boxes of different classes overlapping by this IoU, keep the most confident "
                   "(default: %(default)s; 0 keeps all)")
    p.add_argument("--min-score", type=number(float), help="also hide detections whose peak CAM value is below this")
    p.add_argument("--max-frames", type=number(int, minimum=0), help="stop after this many frames")
    p.add_argument("--http-host", default="127.0.0.1", help="bind address for http:// outputs given without a host")
    p.add_argument("--reconnect-timeout", type=number(float, minimum=0), default=30.0, help="give up on a lost live source after this many "
                   "seconds (0: never)")
    p.add_argument("--stall-timeout", type=number(float, above=0), default=DEFAULT_STALL_TIMEOUT,
                   help="seconds an open stream may send nothing before it counts as lost and is reconnected "
                   "(default: %(default)s)")
    p.add_argument("--summary-every", type=number(float, above=0), default=10.0, help="seconds between log summaries")
    p.add_argument("--threads", type=number(int, minimum=1), help="ONNX Runtime intra-op threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        if args.headless and any(o.startswith("display://") for o in args.output):
            raise ConfigError("--headless and a display:// output contradict each other")
        config = AppConfig(source=args.source, outputs=args.output, json=args.json, overlay=args.overlay,
                           width=args.width, height=args.height, fps=args.fps, flip=args.flip, resize_mode=args.resize,
                           min_score=args.min_score, min_confidence=args.conf or None,
                           overlap_iou=args.overlap_iou or None, max_frames=args.max_frames, summary_every=args.summary_every,
                           reconnect_timeout=args.reconnect_timeout or None, http_host=args.http_host,
                           stall_timeout=args.stall_timeout)
        options = {"threads": args.threads} if args.threads and args.model.endswith(".onnx") else {}
        summary = EdgeApp(args.model, config, **options).run()  # SIGINT/SIGTERM end it cleanly, with a summary
        print(json.dumps({"summary": summary.to_dict()}), file=sys.stderr if args.json == "-" else sys.stdout)
        if summary.failed_outputs:
            return EXIT_OUTPUT_FAILED  # something asked for was not (fully) written: never report that as success
        return EXIT_SOURCE_LOST if summary.stopped_by == "source lost" else 0

    return run_cli("edge_app", work, interrupted="the outputs were closed")


if __name__ == "__main__":
    sys.exit(main())
