"""Embedded digits: drawn with OpenCV's Hershey fonts at random font, scale, thickness and rotation.

They give the demo and the network-free tests a dataset of MNIST's shape without any download.
Real MNIST (see mnist_source) is what results are reported on.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["synthetic_digits"]

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)


def _draw_digit(rng: np.random.Generator, digit: int) -> np.ndarray:
    big = np.zeros((96, 96), dtype=np.uint8)
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    scale = float(rng.uniform(1.6, 2.6)) * (2.0 if font == cv2.FONT_HERSHEY_PLAIN else 1.0)
    thickness = int(rng.integers(3, 9))
    (w, h), base = cv2.getTextSize(str(digit), font, scale, thickness)
    cv2.putText(big, str(digit), ((96 - w) // 2, (96 + h) // 2), font, scale, 255, thickness, cv2.LINE_AA)
    angle = float(rng.uniform(-20, 20))
    rotation = cv2.getRotationMatrix2D((48, 48), angle, 1.0)
    big = cv2.warpAffine(big, rotation, (96, 96))
    rows, cols = np.nonzero(big > 32)
    crop = big[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    # Like MNIST: fit the ink in a 20x20 box keeping the aspect ratio, centre it in 28x28.
    fit = 20.0 / max(crop.shape)
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * fit)), max(1, round(crop.shape[0] * fit))),
                       interpolation=cv2.INTER_AREA)
    out = np.zeros((28, 28), dtype=np.float32)
    y, x = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small / 255.0
    out[out < 0.05] = 0.0  # clean background, so the tight ink box is meaningful
    return out


def synthetic_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(digits float32 (count, 28, 28) in [0, 1], labels) with balanced labels 0-9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    digits = np.stack([_draw_digit(rng, int(d)) for d in labels])
    return digits, labels.astype(np.int64)
