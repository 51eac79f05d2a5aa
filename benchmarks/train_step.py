"""Training step time: train-cam's memory formats side by side (contiguous NCHW vs channels_last NHWC).

One step is what train-cam's loop does per batch: forward, the per-class two-way loss, backward and
the optimizer (Adam, train-cam's default). The models are those of our benchmarks: LeNet on
multi-class MNIST128 (10 classes, 1 x 128 px) and the deep backbones on the shapes set (6 classes,
3 x 128 px, stride 16). Both formats run interleaved in the same process, so load on the machine
hits both alike; the table gives the median step and channels_last's time as a share of contiguous.

    python benchmarks/train_step.py [--threads 1] [--rounds 4] [--steps 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

from _help import Formatter

MODELS = {  # backbone: (classes, input channels, output stride, the benchmark it is trained in)
    "lenet": (10, 1, None, "multi-class MNIST128"),
    "resnet18": (6, 3, 16, "shapes, stride 16"),
    "mobilenet_v3_large": (6, 3, 16, "shapes, stride 16"),
}
BATCH = 32  # train-cam's default
SIDE = 128


def step_times(backbone: str, classes: int, channels: int, stride: int | None, memory_format: str,
               steps: int, seed: int = 0) -> Callable[[], list[float]]:
    """A model and optimizer in one memory format, warmed up; the callable times `steps` more steps."""
    import torch

    from training.model import ModelConfig, build_model
    from training.train import MEMORY_FORMATS

    layout = MEMORY_FORMATS[memory_format]
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone=backbone, classes=[str(c) for c in range(classes)], in_channels=channels,
                                    input_size=[SIDE, SIDE], mean=[0.0] * channels, std=[1.0] * channels,
                                    output_stride=stride)).to(memory_format=layout)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(BATCH, channels, SIDE, SIDE).contiguous(memory_format=layout)
    labels = torch.randint(0, 2, (BATCH, classes))

    def run() -> list[float]:
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images)["logits"].reshape(-1, 2), labels.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        return times

    run()  # warm-up: oneDNN builds its kernels on the first steps
    return run


def cpu_model() -> str:
    """The CPU's name as lscpu gives it (platform.processor() is empty on Linux)."""
    try:
        for line in open("/proc/cpuinfo", encoding="ascii", errors="replace"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the benchmarks train one per job)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per format")
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated rows of the table to run")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} thread(s), "
          f"torch {torch.__version__}, batch {BATCH} x {SIDE} px\n")
    print("| model | contiguous ms/step | channels_last ms/step | channels_last / contiguous |\n| --- | --- | --- | --- |")
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"--models: unknown {name!r}; choose from {', '.join(MODELS)}")
        classes, channels, stride, benchmark = MODELS[name]
        runners = {fmt: step_times(name, classes, channels, stride, fmt, args.steps)
                   for fmt in ("contiguous", "channels_last")}
        times: dict[str, list[float]] = {fmt: [] for fmt in runners}
        for _ in range(args.rounds):
            for fmt, run in runners.items():
                times[fmt] += run()
        median = {fmt: 1000 * statistics.median(values) for fmt, values in times.items()}
        print(f"| {name} ({benchmark}) | {median['contiguous']:.0f} | {median['channels_last']:.0f} | "
              f"{median['channels_last'] / median['contiguous']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
