"""One 640x480 stream, the same video, the same run: edge_app with MobileNetV3@320 (the single-camera
loop and the pipelined app; JSON lines, and JSON lines + overlay + H.264 MP4) against Ultralytics'
YOLOv8n exported to ONNX and run with `YOLO(...).predict(stream=True)` on ONNX Runtime, writing
nothing, at 320 (the same input size) and at its default 640.

Random weights on both sides (speed only; no detection weights are reachable from here, and YOLOv8n
is built from its yaml). Ultralytics is not one of spamcam's dependencies: give it on PYTHONPATH,
e.g. `pip install --target /tmp/ul --no-deps ultralytics ultralytics-thop polars psutil scipy`, then

    YOLO_OFFLINE=1 PYTHONPATH=/tmp/ul python benchmarks/vs_ultralytics.py [--frames 300]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edge_app.app  # noqa: E402,F401  the package, imported before this folder (with edge_app.py) is back
sys.path.append(str(Path(__file__).resolve().parent))  # for _speed

from _speed import make_video, random_onnx  # noqa: E402


def ultralytics_fps(work: Path, video: Path, size: int) -> float:
    from ultralytics import YOLO

    exported = Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=size, simplify=False))
    model_path = exported.rename(work / f"yolov8n{size}.onnx")
    model = YOLO(str(model_path), task="detect")
    for _ in model.predict(str(video), stream=True, verbose=False, save=False, imgsz=size):  # warm-up pass
        pass
    started, frames = time.perf_counter(), 0
    for _ in model.predict(str(video), stream=True, verbose=False, save=False, imgsz=size):
        frames += 1
    return frames / (time.perf_counter() - started)


def spamcam_fps(work: Path, video: Path, *, mp4: bool, pipelined: bool) -> float:
    from edge_app.app import AppConfig, EdgeApp
    from edge_app.multi import MultiCameraApp

    model = work / "mobilenet_v3_large320.onnx"
    if not model.exists():
        random_onnx(work, "mobilenet_v3_large", 320)
    config = AppConfig(source=str(video), json=str(work / "out.jsonl"), outputs=[str(work / "out.mp4")] if mp4 else [])
    EdgeApp(model, AppConfig(source=str(video), max_frames=100), log=lambda _m: None).run()  # warm-up
    if pipelined:
        return MultiCameraApp(model, [config], log=lambda _m: None).run().fps
    return EdgeApp(model, config, log=lambda _m: None).run().fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        raise SystemExit("vs_ultralytics: Ultralytics is not importable; see this script's --help") from None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "input.mp4"
        make_video(video, args.frames)
        os.chdir(work)  # Ultralytics writes its exports next to the working directory
        for size in (320, 640):
            rows.append((f"Ultralytics YOLOv8n ONNX predict @{size}", "nothing", ultralytics_fps(work, video, size)))
        for pipelined in (False, True):
            for mp4 in (False, True):
                rows.append((f"edge_app MobileNetV3@320{', pipelined' if pipelined else ''}",
                             "JSON lines + overlay + H.264 MP4" if mp4 else "JSON lines",
                             spamcam_fps(work, video, mp4=mp4, pipelined=pipelined)))
    base = rows[0][2]
    print(f"\nmachine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; 640x480 video, "
          f"{args.frames} frames; ONNX Runtime CPU")
    print("| setup | writes | FPS | vs Ultralytics @320 |")
    print("| --- | --- | --- | --- |")
    for name, writes, fps in rows:
        print(f"| {name} | {writes} | {fps:.1f} | {fps / base:.2f} |")


if __name__ == "__main__":
    main()
