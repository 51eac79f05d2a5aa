"""One 640x480 stream, the same video, the same run: edge_app with MobileNetV3@320 (the single-camera
loop and the pipelined app; JSON lines, and JSON lines + overlay + H.264 MP4) against Ultralytics'
YOLOv8n exported to ONNX and run with `YOLO(...).predict(stream=True)` on ONNX Runtime, writing
nothing, at 320 (the same input size) and at its default 640.

Random weights on both sides (speed only; no detection weights are reachable from here, and YOLOv8n
is built from its yaml). Ultralytics is not one of spamcam's dependencies: give it on PYTHONPATH,
e.g. `pip install --target /tmp/ul --no-deps ultralytics ultralytics-thop polars psutil scipy`, then

    YOLO_OFFLINE=1 PYTHONPATH=/tmp/ul python benchmarks/vs_ultralytics.py [--frames 300] [--repeats 3]

The MP4 rows are run with the default x264 preset (--video-preset) and with veryfast, its old default.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edge_app.app  # noqa: E402,F401  the package, imported before this folder (with edge_app.py) is back
sys.path.append(str(Path(__file__).resolve().parent))  # for _speed

from _speed import make_video, random_onnx  # noqa: E402


def ultralytics_model(work: Path, size: int):
    from ultralytics import YOLO

    exported = Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=size, simplify=False))
    model = YOLO(str(exported.rename(work / f"yolov8n{size}.onnx")), task="detect")
    for _ in model.predict(str(work / "input.mp4"), stream=True, verbose=False, save=False, imgsz=size):  # warm-up
        pass
    return model


def ultralytics_fps(model, video: Path, size: int) -> float:
    started, frames = time.perf_counter(), 0
    for _ in model.predict(str(video), stream=True, verbose=False, save=False, imgsz=size):
        frames += 1
    return frames / (time.perf_counter() - started)


def spamcam_fps(work: Path, video: Path, *, mp4: bool, pipelined: bool, preset: str | None = None) -> float:
    from edge_app.app import AppConfig, EdgeApp
    from edge_app.multi import MultiCameraApp

    model = work / "mobilenet_v3_large320.onnx"
    if not model.exists():
        random_onnx(work, "mobilenet_v3_large", 320)
        EdgeApp(model, AppConfig(source=str(video), max_frames=100), log=lambda _m: None).run()  # warm-up
    config = AppConfig(source=str(video), json=str(work / "out.jsonl"), outputs=[str(work / "out.mp4")] if mp4 else [],
                       **({"video_preset": preset} if preset else {}))
    if pipelined:
        return MultiCameraApp(model, [config], log=lambda _m: None).run().fps
    return EdgeApp(model, config, log=lambda _m: None).run().fps


def main() -> None:
    from edge_app.video_output import DEFAULT_X264_PRESET

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of every setup (medians)")
    args = parser.parse_args()
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        raise SystemExit("vs_ultralytics: Ultralytics is not importable; see this script's --help") from None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "input.mp4"
        make_video(video, args.frames)
        os.chdir(work)  # Ultralytics writes its exports next to the working directory
        yolo = {size: ultralytics_model(work, size) for size in (320, 640)}
        setups = {(f"Ultralytics YOLOv8n ONNX predict @{size}", "nothing"): (lambda size=size: ultralytics_fps(
            yolo[size], video, size)) for size in (320, 640)}
        for pipelined in (False, True):
            name = f"edge_app MobileNetV3@320{', pipelined' if pipelined else ''}"
            setups[(name, "JSON lines")] = lambda p=pipelined: spamcam_fps(work, video, mp4=False, pipelined=p)
            for preset in (DEFAULT_X264_PRESET, "veryfast"):
                setups[(name, f"JSON lines + overlay + H.264 MP4 (x264 {preset})")] = (
                    lambda p=pipelined, preset=preset: spamcam_fps(work, video, mp4=True, pipelined=p, preset=preset))
        fps = {key: [] for key in setups}
        for _ in range(args.repeats):
            for key, measure in setups.items():
                fps[key].append(measure())
    medians = {key: float(np.median(values)) for key, values in fps.items()}
    base = next(iter(medians.values()))
    print(f"\nmachine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; 640x480 video, "
          f"{args.frames} frames; ONNX Runtime CPU; median of {args.repeats} interleaved runs")
    print("| setup | writes | FPS | vs Ultralytics @320 | runs |")
    print("| --- | --- | --- | --- | --- |")
    for (name, writes), value in medians.items():
        print(f"| {name} | {writes} | {value:.1f} | {value / base:.2f} | {', '.join(f'{v:.0f}' for v in fps[(name, writes)])} |")


if __name__ == "__main__":
    main()
