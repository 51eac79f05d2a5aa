"""Frame pre-processing: runtime.preprocess (colour conversion and resizing on 8-bit pixels, float
at the end) against the baseline it replaced (the whole frame made float first), on camera-sized
frames, for a grey LeNet input and an RGB MobileNet input.

    python benchmarks/preprocess.py [--calls 300]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from runtime.preprocess import preprocess  # noqa: E402


def float_first(frame: np.ndarray, input_size: tuple[int, int], channels: int) -> np.ndarray:
    """The baseline: what runtime.preprocess did before (resize mode)."""
    image = frame.astype(np.float32) / 255.0
    code = cv2.COLOR_BGR2GRAY if channels == 1 else cv2.COLOR_BGR2RGB
    image = cv2.cvtColor(image, code)
    resized = cv2.resize(image, (input_size[1], input_size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray((resized[:, :, None] if resized.ndim == 2 else resized).transpose(2, 0, 1))


def mean_ms(function, calls: int) -> float:
    function()  # first call pays one-time set-up
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return 1000 * (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"machine: {platform.machine()}, OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads")
    print("| frame | model input | float first (baseline) ms | runtime.preprocess ms | speed-up | max difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for height, width in ((480, 640), (720, 1280), (1080, 1920)):
        frame = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 1)
        for size, channels in ((128, 1), (320, 3)):
            base = mean_ms(lambda: float_first(frame, (size, size), channels), args.calls)
            ours = mean_ms(lambda: preprocess(frame, (size, size), channels), args.calls)
            difference = np.abs(preprocess(frame, (size, size), channels)[0] - float_first(frame, (size, size), channels))
            print(f"| {width}×{height} | {channels}×{size}×{size} | {base:.2f} | {ours:.2f} | {base / ours:.1f}× | "
                  f"{difference.max() * 255:.2f}/255 |", flush=True)


if __name__ == "__main__":
    main()
