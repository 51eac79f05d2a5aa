"""End-to-end edge_app speed on this CPU: a 640x480 video through the whole loop (decode, pre-process,
inference, post-process, overlay + video encode), for LeNet@128 and MobileNetV3@320 models.

    python benchmarks/edge_app.py [--frames 300]

Models have random weights (speed only) and are run through ONNX Runtime FP32, and INT8 for LeNet.
Prints one markdown table of FPS and per-stage milliseconds per frame.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# edge_app package it measures.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def make_video(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for t in range(frames):
        frame = np.full((480, 640, 3), 30, np.uint8)
        for k in range(3):
            x, y = int(80 + 200 * k + 60 * np.sin(t / 20 + k)), int(200 + 120 * np.cos(t / 25 + k))
            cv2.putText(frame, str((t // 30 + k) % 10), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 8)
        frame = cv2.add(frame, rng.integers(0, 20, frame.shape, dtype=np.uint8))
        writer.write(frame)
    writer.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    import torch

    from calibration.quantize import quantize_int8
    from edge_app.app import STAGES, AppConfig, EdgeApp
    from export.onnx_export import export_onnx
    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model, default_normalisation

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "input.mp4"
        make_video(video, args.frames)
        for name, size, int8 in (("lenet", 128, False), ("lenet", 128, True), ("mobilenet_v3_large", 320, False)):
            channels = 1 if name == "lenet" else 3
            mean, std = default_normalisation(name, channels)
            torch.manual_seed(0)
            model = build_model(ModelConfig(backbone=name, classes=["3"], input_size=[size, size], in_channels=channels,
                                            mean=mean, std=std))
            onnx_path = export_onnx(save_checkpoint(work / f"{name}.pt", model), work / f"{name}.onnx")
            if int8:
                onnx_path = quantize_int8(onnx_path, work / f"{name}.int8.onnx", calibration="embedded", samples=32,
                                          show_progress=False)
            # Warm-up: the first frames of a process pay OpenCV's and ONNX Runtime's one-time set-up.
            EdgeApp(onnx_path, AppConfig(source=str(video), max_frames=150), log=lambda _m: None).run()
            for with_output in (False, True):
                outputs = [str(work / "out.mp4")] if with_output else []
                app = EdgeApp(onnx_path, AppConfig(source=str(video), outputs=outputs), log=lambda _m: None)
                summary = app.run()
                label = f"{name}@{size} {'INT8' if int8 else 'FP32'}"
                rows.append((label, "overlay + mp4" if with_output else "JSON only", summary.fps,
                             *(summary.stage_ms[s] for s in STAGES)))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads; 640x480 video, {args.frames} frames; "
          "ONNX Runtime CPU")
    print("| model | outputs | FPS | capture ms | preprocess ms | inference ms | postprocess ms | output ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | " + " | ".join(f"{v:.2f}" for v in r[3:]) + " |")


if __name__ == "__main__":
    main()
