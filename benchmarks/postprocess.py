"""Post-processing speed: the paper-literal reference vs the fast path, per frame, 20 classes.

CAM shapes are those of LeNet@128, MobileNetV3@320 and VGG-16@512 (their traced geometry); the maps
hold a few Gaussian "objects" on a negative background, like a trained CAM. Also times the model's
own forward pass (PyTorch eager, batch 1, random weights) so the post-processing can be put beside it.

    python benchmarks/postprocess.py [--frames 30]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from runtime.postprocess import LocalizerParams, localize

MODELS = [("lenet", 128, 1), ("mobilenet_v3_large", 320, 3), ("vgg16", 512, 3)]


def realistic_cams(rng: np.random.Generator, classes: int, n: int, m: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:m]
    cams = rng.normal(-2.0, 0.3, size=(classes, n, m))
    for c in rng.choice(classes, size=rng.integers(1, 4), replace=False):  # 1-3 classes present
        for _ in range(rng.integers(1, 3)):  # 1-2 objects each
            cy, cx = rng.uniform(0, n), rng.uniform(0, m)
            sy, sx = rng.uniform(0.8, max(1.0, n / 5)), rng.uniform(0.8, max(1.0, m / 5))
            cams[c] += rng.uniform(3, 6) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    return cams.astype(np.float32)


def median_ms(fn, inputs) -> float:
    times = []
    for item in inputs:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--classes", type=int, default=20)
    args = parser.parse_args()
    import torch

    from training.backbones import build_backbone
    from training.geometry import extract_chain

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    rows = []
    for name, size, channels in MODELS:
        features, _ = build_backbone(name)
        features.eval()
        chain = extract_chain(features) + ((1, 1, 0),)
        image = torch.rand(1, channels, size, size)
        with torch.no_grad():
            n, m = features(image).shape[-2:]
            model_ms = median_ms(lambda _: features(image), range(5))
        params = LocalizerParams([0.0] * args.classes, chain, (size, size), ratio=0.3)
        frames = [realistic_cams(rng, args.classes, n, m) for _ in range(args.frames)]
        boxes = sum(len(localize(f, params)) for f in frames) / len(frames)
        fast = median_ms(lambda f: localize(f, params, "fast"), frames)
        reference = median_ms(lambda f: localize(f, params, "reference"), frames)
        rows.append((f"{name}@{size}", f"{args.classes}x{n}x{m}", boxes, reference, fast, reference / fast, model_ms))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"numpy {np.__version__}; {args.frames} frames each, median per frame")
    print("| model@input | CAM | boxes/frame | reference ms | fast ms | speed-up | model forward ms (torch, CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]:.1f} | {row[3]:.2f} | {row[4]:.2f} | {row[5]:.1f}x | {row[6]:.1f} |")


if __name__ == "__main__":
    main()
