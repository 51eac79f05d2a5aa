"""Tuning r: how long train-cam's validation spends choosing Algorithm 1's r, before and now.

Before: every r tried localized every image in full (peaks, flooded mountains, projection) and
matched each box to the ground truth one at a time (extent_ap_reference, the VOC devkit's loop).
Now: the mountains are flooded once per image for all r (runtime.postprocess.localizer_over_ratios)
and each image's boxes are matched together (runtime.metrics.extent_ap). Both run here on the same
CAMs, and the script checks that the two give the same curve to the last bit.

The CAMs are LeNet's on multi-class MNIST128 in shape (10 classes, 25 x 25 at 128 px), with 1-3
Gaussian objects per canvas, each of its own class and with a ground-truth box at its place;
`--spread` sets how many classes also rise (weakly) where another class's object is, which is what
a GAP model's maps do and what makes its boxes many.

    python benchmarks/tuning.py [--canvases 1000] [--spread 0 3]
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from _help import Formatter

CLASSES, CAM_SIDE, INPUT = 10, 25, 128
LENET_CHAIN = ((5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0), (5, 1, 0), (1, 1, 0))


def canvases(count: int, spread: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(count, C, N, N) CAMs and each canvas's (K, 5) ground truth (class, x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:CAM_SIDE, 0:CAM_SIDE]
    cams = rng.normal(-2.0, 0.3, size=(count, CLASSES, CAM_SIDE, CAM_SIDE)).astype(np.float32)
    truths = []
    for i in range(count):
        truth = []
        for _ in range(int(rng.integers(1, 4))):
            cls, (cy, cx) = int(rng.integers(CLASSES)), rng.uniform(2, CAM_SIDE - 2, 2)
            bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(1.0, 2.0) ** 2))
            cams[i, cls] += rng.uniform(3, 6) * bump
            for other in rng.choice(CLASSES, size=spread, replace=False):
                cams[i, other] += rng.uniform(1.0, 2.5) * bump  # weaker evidence of other classes
            x, y = 4 * cx + 16 - 14, 4 * cy + 16 - 14  # the CAM pixel's field centre, a 28 px object
            truth.append((cls, x, y, x + 28, y + 28))
        truths.append(np.array(truth, dtype=np.float64))
    return cams, truths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--canvases", type=int, default=1000, help="validation canvases (train-cam's benchmarks use 1000)")
    parser.add_argument("--spread", type=int, nargs="+", default=[0, 3], help="classes that also rise on each object")
    args = parser.parse_args()
    from runtime.evaluation import DEFAULT_RATIOS
    from runtime.metrics import extent_ap, extent_ap_reference
    from runtime.postprocess import LocalizerParams, localize_batch, localizer_over_ratios

    params = LocalizerParams([0.0] * CLASSES, LENET_CHAIN, (INPUT, INPUT))
    print(f"{os.cpu_count()} cores; {args.canvases} canvases, {CLASSES} classes, {len(DEFAULT_RATIOS)} values of r\n")
    print("| CAMs | boxes / canvas at r = 0.5 | before s | now s | before / now |\n| --- | --- | --- | --- | --- |")
    for spread in args.spread:
        cams, truths = canvases(args.canvases, spread)
        started = time.perf_counter()
        before = [float(np.nanmean(extent_ap_reference(localize_batch(cams, replace(params, ratio=r)), truths, CLASSES)))
                  for r in DEFAULT_RATIOS]
        before_s = time.perf_counter() - started
        started = time.perf_counter()
        boxes_at = localizer_over_ratios(cams, params)
        now = [float(np.nanmean(extent_ap(boxes_at(r, None), truths, CLASSES))) for r in DEFAULT_RATIOS]
        now_s = time.perf_counter() - started
        if before != now:
            raise SystemExit(f"tuning: the two curves differ ({before} vs {now}): a bug, not a benchmark result")
        boxes = sum(map(len, boxes_at(0.5, None))) / args.canvases
        label = "one class per object" if spread == 0 else f"{spread} more classes rise on each object"
        print(f"| {label} | {boxes:.1f} | {before_s:.1f} | {now_s:.1f} | {before_s / now_s:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
