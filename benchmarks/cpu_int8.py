"""INT8 on CPUs: which INT8 format pays on ONNX Runtime's CPU kernels, and what build-engine deploys.

For each backbone (random weights: speed only) it times, at batch 1 on this CPU, in one run:
FP32 (ONNX Runtime-optimized; the baseline), the TensorRT-form Q/DQ model (S8S8 symmetric, what
quantize-int8 writes by default) and the CPU-form Q/DQ model (U8S8, `quantize-int8 --target cpu`),
then says what `build-engine --backend onnxruntime --int8` chose (it measures the same way and keeps
INT8 only when it is faster and within the CAM SQNR budget). With `--checkpoint` it also measures
the accuracy the deployed CPU model keeps on MNIST128 (extent AP, FP32 vs deployed).

    python benchmarks/cpu_int8.py [--models lenet,mobilenet_v3_large,vgg16] [--seconds 6] [--checkpoint ckpt.pt]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"lenet": 128, "mobilenet_v3_large": 320, "vgg16": 512}


def random_model(name: str, work: Path) -> Path:
    import torch

    from export.onnx_export import export_onnx
    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model, default_normalisation

    channels = 1 if name.startswith("lenet") else 3
    mean, std = default_normalisation(name, channels)
    torch.manual_seed(0)
    size = SIZES[name]
    model = build_model(ModelConfig(backbone=name, classes=[str(i) for i in range(20)], input_size=[size, size],
                                    in_channels=channels, mean=mean, std=std)).eval()
    return export_onnx(save_checkpoint(work / f"{name}.pt", model), work / f"{name}.onnx")


def speed_row(name: str, fp32: Path, work: Path, seconds: float, calibration: str) -> dict:
    from calibration.quantize import quantize_int8
    from engines.onnxruntime_model import build_onnxruntime_model, ort_optimized
    from engines.timing import median_ms
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from runtime.model_info import read_onnx_metadata
    import onnx

    forms = {"FP32": ort_optimized(fp32, work / f"{name}.ort.onnx")}
    for target, label in (("tensorrt", "INT8 S8S8 (TensorRT form)"), ("cpu", "INT8 U8S8 (CPU form)")):
        quantized = quantize_int8(fp32, work / f"{name}.{target}.int8.onnx", calibration=calibration, samples=16,
                                  show_progress=False, target=target)
        forms[label] = ort_optimized(quantized, work / f"{name}.{target}.int8.ort.onnx")
    info = read_onnx_metadata(onnx.load(str(fp32)))
    batch = np.random.default_rng(0).random((1, info.in_channels, *info.input_size), dtype=np.float32)
    ms = {label: median_ms(OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"]), batch, seconds, runs=200)
          for label, path in forms.items()}
    deployed = build_onnxruntime_model(fp32, work / f"{name}.deployed.onnx", int8=True, calibration=calibration,
                                       calib_samples=16)
    choice = read_onnx_metadata(onnx.load(str(deployed))).extra["cpu_choice"]
    return {"model": f"{name}@{SIZES[name]}", "ms": ms, "choice": choice}


def accuracy_row(checkpoint: str, work: Path) -> dict:
    from engines.onnxruntime_model import build_onnxruntime_model
    from export.onnx_export import export_onnx
    from runtime.model_info import read_onnx_metadata
    from training.evaluate import evaluate_model
    import onnx

    fp32 = export_onnx(checkpoint, work / "trained.onnx")
    deployed = build_onnxruntime_model(fp32, work / "trained.deployed.onnx", int8=True, calib_samples=256)
    forced = build_onnxruntime_model(fp32, work / "trained.int8.onnx", int8=True, calib_samples=256, choose=False)
    result = {"checkpoint": checkpoint, "choice": read_onnx_metadata(onnx.load(str(deployed))).extra["cpu_choice"]}
    for key, path in (("fp32", fp32), ("deployed", deployed), ("int8_u8s8", forced)):
        metrics = evaluate_model(path, progress=False)
        result[key] = {"extent_ap": metrics["extent_ap_mean"], "classification_ap": metrics["classification_ap_mean"],
                       "images": metrics["images"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(SIZES))
    parser.add_argument("--seconds", type=float, default=6.0, help="time budget per measurement")
    parser.add_argument("--calib", default="embedded", help="calibration images for the random-weight models")
    parser.add_argument("--checkpoint", help="a trained MNIST128 checkpoint: also measure the accuracy kept")
    args = parser.parse_args()
    import onnxruntime

    cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = [speed_row(name, random_model(name, work), work, args.seconds, args.calib) for name in args.models.split(",")]
        accuracy = accuracy_row(args.checkpoint, work) if args.checkpoint else None
    labels = list(rows[0]["ms"])
    print(f"\n{cpu or platform.processor()}, {platform.machine()}, ONNX Runtime {onnxruntime.__version__}, batch 1, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| model | " + " | ".join(f"{label} ms (x FP32)" for label in labels) + " | build-engine deploys |")
    print("| --- " * (len(labels) + 2) + "|")
    for row in rows:
        base = row["ms"]["FP32"]
        cells = [f"{ms:.2f} ({base / ms:.2f}x)" for ms in row["ms"].values()]
        choice = row["choice"]
        print(f"| {row['model']} | " + " | ".join(cells) + f" | {choice['chosen'].upper()} "
              f"(INT8 {choice['fp32_ms'] / choice['int8_ms']:.2f}x, SQNR {choice['cam_sqnr_db']:.1f} dB) |")
    if accuracy:
        print(f"\nAccuracy on MNIST128 ({accuracy['fp32']['images']} test images, {accuracy['checkpoint']}): extent AP "
              f"FP32 {100 * accuracy['fp32']['extent_ap']:.1f}, deployed ({accuracy['choice']['chosen'].upper()}) "
              f"{100 * accuracy['deployed']['extent_ap']:.1f}, U8S8 INT8 {100 * accuracy['int8_u8s8']['extent_ap']:.1f}; "
              f"classification AP {100 * accuracy['fp32']['classification_ap']:.1f} / "
              f"{100 * accuracy['deployed']['classification_ap']:.1f} / {100 * accuracy['int8_u8s8']['classification_ap']:.1f}")
        print(f"build-engine said: {accuracy['choice']['reason']}")


if __name__ == "__main__":
    main()
