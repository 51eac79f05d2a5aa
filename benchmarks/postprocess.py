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

import cv2
import numpy as np

from runtime.postprocess import LocalizerParams, localize

MODELS = [("lenet", 128, 1), ("mobilenet_v3_large", 320, 3), ("vgg16", 512, 3)]
CHAINS: dict = {}  # model -> its traced receptive-field chain (filled by main)


def realistic_cams(rng: np.random.Generator, classes: int, n: int, m: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:m]
    cams = rng.normal(-2.0, 0.3, size=(classes, n, m))
    for c in rng.choice(classes, size=min(classes, rng.integers(1, 4)), replace=False):  # 1-3 classes present
        for _ in range(rng.integers(1, 3)):  # 1-2 objects each
            cy, cx = rng.uniform(0, n), rng.uniform(0, m)
            sy, sx = rng.uniform(0.8, max(1.0, n / 5)), rng.uniform(0.8, max(1.0, m / 5))
            cams[c] += rng.uniform(3, 6) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    return cams.astype(np.float32)


def wsol_boxes(cams: np.ndarray, thresholds, input_size, cam_threshold: float = 0.2) -> list:
    """The WSOL literature's box extraction (clovaai/wsolevaluation's compute_bboxes_from_scoremaps;
    the CAM paper's "20 % of the maximum"), for each class whose map clears its threshold (the same
    classes spamcam looks at): resize the map to the input, min-max normalise, threshold, external
    contours, bounding boxes."""
    height, width = input_size
    boxes = []
    for c in np.flatnonzero(cams.reshape(len(cams), -1).max(axis=1) > thresholds):
        cam = cv2.resize(cams[c], (width, height), interpolation=cv2.INTER_CUBIC)
        cam = cam - cam.min()
        cam = cam / max(float(cam.max()), 1e-12)
        _, binary = cv2.threshold((cam * 255).astype(np.uint8), int(cam_threshold * 255), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        boxes += [(int(c), cv2.boundingRect(contour)) for contour in contours]
    return boxes


def peer_rows(rng: np.random.Generator, frames: int) -> list:
    """spamcam's fast path against the literature's extraction on the issue's map shapes, one frame
    at a time as a camera loop calls it; and the fast path's boxes against the reference's."""
    rows = []
    for name, size, classes, n in (("lenet", 128, 1, 25), ("mobilenet_v3_large", 320, 20, 10), ("vgg16", 512, 20, 16)):
        chain = CHAINS[name]
        params = LocalizerParams([0.0] * classes, chain, (size, size), ratio=0.3)
        maps = [realistic_cams(rng, classes, n, n) for _ in range(frames)]
        same = all(localize(f, params, "fast") == localize(f, params, "reference") for f in maps)
        thresholds = np.zeros(classes)
        for _ in range(3):  # warm-up
            localize(maps[0], params, "fast"), wsol_boxes(maps[0], thresholds, (size, size))
        fast = median_ms(lambda f: localize(f, params, "fast"), maps * 10)
        peer = median_ms(lambda f: wsol_boxes(f, thresholds, (size, size)), maps * 10)
        rows.append((f"{name}@{size}", f"{classes}x{n}x{n}", fast, peer, peer / fast, same))
    return rows


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
        CHAINS[name] = chain
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
    print("\nAgainst the WSOL literature's extraction (resize, normalise, threshold, contours) on the classes that "
          "clear t_c; median per frame over 10 passes")
    print("| model@input | CAM | spamcam fast ms | WSOL extraction ms | WSOL / spamcam | fast = reference boxes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in peer_rows(rng, args.frames):
        print(f"| {row[0]} | {row[1]} | {row[2]:.3f} | {row[3]:.3f} | {row[4]:.2f} | {'yes' if row[5] else 'NO'} |")


if __name__ == "__main__":
    main()
