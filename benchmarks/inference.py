"""Inference speed: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (Q/DQ) on this CPU, plus
PyTorch CUDA and TensorRT FP16/INT8 where present; batch 1 and 8; random weights (speed only).

    python benchmarks/inference.py [--models lenet,mobilenet_v3_large,vgg16] [--seconds 8]

Prints one markdown table: median and p90 latency per batch, throughput, and speed-up against
PyTorch eager (CPU) measured in the same run.
"""
from __future__ import annotations

import argparse
import copy
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = {"lenet": 128, "mobilenet_v3_large": 320, "vgg16": 512}


def timings(fn, batch, seconds: float, min_runs: int = 3, max_runs: int = 200) -> list[float]:
    fn(batch)  # warm-up (lazy initialisation, allocation, kernel selection)
    out, start = [], time.perf_counter()
    while len(out) < max_runs and (len(out) < min_runs or time.perf_counter() - start < seconds):
        begin = time.perf_counter()
        fn(batch)
        out.append((time.perf_counter() - begin) * 1000)
    return out


def prepare(name: str, size: int, work: Path):
    import torch

    from calibration.quantize import quantize_int8
    from export.onnx_export import export_onnx
    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model, default_normalisation

    channels = 1 if name == "lenet" else 3
    mean, std = default_normalisation(name, channels)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name, classes=[str(i) for i in range(20)], input_size=[size, size],
                                    in_channels=channels, mean=mean, std=std)).eval()
    ckpt = save_checkpoint(work / f"{name}.pt", model)
    fp32 = export_onnx(ckpt, work / f"{name}.onnx")
    int8 = quantize_int8(fp32, work / f"{name}.int8.onnx", calibration="embedded", samples=16, show_progress=False)
    return model, channels, fp32, int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=8.0, help="time budget per measurement")
    args = parser.parse_args()
    import torch

    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            size = MODELS[name]
            model, channels, fp32, int8 = prepare(name, size, Path(tmp))
            runners = {"PyTorch eager (CPU)": lambda b, m=model: m.cam(torch.from_numpy(b))}
            runners["ONNX Runtime FP32 (CPU)"] = OnnxRuntimeBackend(fp32, providers=["CPUExecutionProvider"]).infer
            runners["ONNX Runtime INT8 (CPU)"] = OnnxRuntimeBackend(int8, providers=["CPUExecutionProvider"]).infer
            if torch.cuda.is_available():
                gpu = copy.deepcopy(model).to("cuda").eval()

                def cuda_run(b, m=gpu):
                    out = m.cam(torch.from_numpy(b).to("cuda", non_blocking=True)).cpu()
                    return out

                runners[f"PyTorch eager ({torch.cuda.get_device_name(0)})"] = cuda_run
            runners.update(tensorrt_runners(fp32, int8, Path(tmp), name))
            for batch_size in (int(b) for b in args.batches.split(",")):
                batch = np.random.default_rng(0).random((batch_size, channels, size, size), dtype=np.float32)
                baseline = None
                for label, fn in runners.items():
                    with torch.inference_mode():
                        times = timings(fn, batch, args.seconds)
                    median, p90 = float(np.median(times)), float(np.percentile(times, 90))
                    baseline = baseline or median
                    rows.append((f"{name}@{size}", batch_size, label, median, p90, 1000 * batch_size / median,
                                 baseline / median, len(times)))
                    print(f"  {rows[-1][0]} b{batch_size} {label}: {median:.2f} ms", flush=True)
    print(f"\nmachine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
          f"onnxruntime {__import__('onnxruntime').__version__}")
    print("| model@input | batch | runtime | median ms | p90 ms | images/s | vs PyTorch eager CPU | runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.1f} | {r[6]:.2f}x | {r[7]} |")


def tensorrt_runners(fp32: Path, int8: Path, work: Path, name: str) -> dict:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        print("  (TensorRT not installed: no TensorRT rows)")
        return {}
    from engines.tensorrt_engine import build_tensorrt_engine
    from runtime.backends.tensorrt_backend import TensorRTBackend

    out = {}
    for precision, source in (("fp16", fp32), ("int8", int8)):
        engine = build_tensorrt_engine(source, work / f"{name}.{precision}.engine", precision=precision, batch=(1, 8, 8))
        out[f"TensorRT {precision.upper()}"] = TensorRTBackend(engine).infer
    return out


if __name__ == "__main__":
    main()
