"""The README's main command (`make demo`): spamcam end to end on embedded data, no downloads.

train-cam (SPAM-CAM, LeNet, embedded digits) -> eval-cam -> export-onnx --verify -> build-engine
(TensorRT FP16 where TensorRT and a GPU are present, ONNX Runtime INT8 otherwise) -> edge_app over a
generated video of moving digits -> a summary with scores, FPS and the paths it wrote.

    python demo.py [--out runs/demo] [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def generated_video(path: Path, frames: int = 150, size: int = 512, seed: int = 7) -> None:
    """Four embedded digits (one of them a 3) drifting over a dark frame, 4x MNIST scale."""
    from training.data.synthetic import synthetic_digits

    digits, labels = synthetic_digits(40, seed=seed)
    chosen = [int(np.flatnonzero(labels == d)[0]) for d in (3, 1, 7, 5)]
    rng = np.random.default_rng(seed)
    span = size - 122
    starts, speeds = rng.uniform(0, span, (4, 2)), rng.uniform(-3, 3, (4, 2))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (size, size))
    for t in range(frames):
        frame = np.zeros((size, size), np.uint8)
        travelled = (starts + speeds * t) % (2 * span)
        positions = (np.where(travelled > span, 2 * span - travelled, travelled) + 5).astype(int)  # bounce
        for (x, y), index in zip(positions, chosen):
            big = cv2.resize((digits[index] * 255).astype(np.uint8), (112, 112), interpolation=cv2.INTER_LINEAR)
            region = frame[y : y + 112, x : x + 112]
            np.maximum(region, big, out=region)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def tensorrt_ready() -> bool:
    try:
        import tensorrt  # noqa: F401

        from runtime.backends.cuda_memory import load_cuda_api

        load_cuda_api()
        return True
    except (ImportError, RuntimeError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from edge_app.app import AppConfig, EdgeApp
    from engines.onnxruntime_model import build_onnxruntime_model
    from engines.tensorrt_engine import build_tensorrt_engine
    from export.onnx_export import export_onnx, verify_onnx
    from training.data.registry import load_splits
    from training.evaluate import evaluate_model, format_table
    from training.train import TrainConfig, train

    step("1/5 train-cam: SPAM-CAM on embedded digits (image-level labels only)")
    record = train(TrainConfig(dataset="embedded", epochs=args.epochs, limits={"train": 3000, "val": 500}, overwrite=True,
                               out=str(out), progress=sys.stdout.isatty()))
    checkpoint = record["checkpoint"]

    step("2/5 eval-cam: test split")
    metrics = evaluate_model(checkpoint, dataset="embedded", limit=1000, save_vis=str(out / "vis"), vis_count=12)
    print(format_table(metrics))

    step("3/5 export-onnx --verify")
    onnx_path = export_onnx(checkpoint, out / "model.onnx")
    test = load_splits("embedded", sizes={"test": 16}).test
    difference = verify_onnx(checkpoint, onnx_path, np.stack([test[i].image for i in range(16)]))
    print(f"{onnx_path}: max |ONNX Runtime - PyTorch| = {difference:.2e} on 16 test images")

    step("4/5 build-engine")
    if tensorrt_ready():
        model_path = build_tensorrt_engine(onnx_path, out / "model.fp16.engine", precision="fp16")
        print(f"TensorRT FP16 engine: {model_path}")
    else:
        print("TensorRT or a CUDA GPU is not available here: an ONNX Runtime model for this CPU, INT8 if it pays")
        model_path = build_onnxruntime_model(onnx_path, out / "model.cpu.onnx", int8=True, calibration="embedded",
                                             calib_samples=128)
        deployed = evaluate_model(model_path, dataset="embedded", limit=1000)
        print(f"{model_path}: classification AP {100 * deployed['classification_ap_mean']:.1f}, extent AP "
              f"{100 * deployed['extent_ap_mean']:.1f} (checkpoint: {100 * metrics['extent_ap_mean']:.1f})")

    step("5/5 edge_app over a generated video")
    video = out / "input.mp4"
    generated_video(video)
    result_video, result_json = out / "output.mp4", out / "detections.jsonl"
    summary = EdgeApp(model_path, AppConfig(source=str(video), outputs=[str(result_video)], json=str(result_json),
                                            overlay="heatmap", summary_every=1e9)).run()

    report = {
        "classification_ap": round(100 * metrics["classification_ap_mean"], 1),
        "pinpoint_ap": round(100 * metrics["pinpoint_ap_mean"], 1),
        "extent_ap": round(100 * metrics["extent_ap_mean"], 1),
        "edge_app_fps": round(summary.fps, 1),
        "frames": summary.frames,
        "stage_ms": {k: round(v, 2) for k, v in summary.stage_ms.items()},
        "checkpoint": str(checkpoint), "onnx": str(onnx_path), "deployed_model": str(model_path),
        "video": str(result_video), "json": str(result_json), "pictures": str(out / "vis"),
    }
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    step("summary")
    for key, value in report.items():
        print(f"  {key:>18}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
