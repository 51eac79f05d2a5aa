"""Image-level scores and pin-points from CAMs alone.

A deployed model stops at the CAM (the paper removes pooling and softmax at inference). Re-applying
the model's own pooling and output affine here in numpy means the CAM-only model still classifies,
with the same numbers the training graph would give.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry import projected_centres

__all__ = ["POOLINGS", "DEFAULT_SPAM_KERNELS", "pool_cams", "class_probabilities", "pin_points"]


POOLINGS = ("gmp", "gap", "spam")  # the global poolings a model can be trained with (training.pooling)
# SPAM's pyramid (paper §4.1): 1x1, 2x2, 5x5 windows and the whole map ("N").
DEFAULT_SPAM_KERNELS = (1, 2, 5, "N")


def _window_means(cams: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Mean of every kh x kw window (stride 1, no padding) via an integral image: (..., N-kh+1, M-kw+1)."""
    integral = np.zeros(cams.shape[:-2] + (cams.shape[-2] + 1, cams.shape[-1] + 1), dtype=np.float64)
    integral[..., 1:, 1:] = cams.cumsum(-2).cumsum(-1)
    sums = integral[..., kh:, kw:] - integral[..., :-kh, kw:] - integral[..., kh:, :-kw] + integral[..., :-kh, :-kw]
    return sums / (kh * kw)


def pool_cams(cams: np.ndarray, mode: str, kernels: Sequence = DEFAULT_SPAM_KERNELS) -> np.ndarray:
    """(..., N, M) -> (...): GMP, GAP or SPAM, matching training.pooling exactly."""
    cams = np.asarray(cams, dtype=np.float64)
    if mode == "gmp":
        return cams.max(axis=(-2, -1))
    if mode == "gap":
        return cams.mean(axis=(-2, -1))
    if mode != "spam":
        raise ValueError(f"pooling must be gmp, gap or spam, got {mode!r}")
    n, m = cams.shape[-2:]
    steps = []
    for kernel in kernels:
        kh, kw = (n, m) if str(kernel).upper() == "N" else (min(int(kernel), n), min(int(kernel), m))
        steps.append(_window_means(cams, kh, kw).max(axis=(-2, -1)))
    return np.mean(steps, axis=0)


def class_probabilities(pooled: np.ndarray, slopes: Sequence[float], intercepts: Sequence[float]) -> np.ndarray:
    """P(present) = sigmoid(a_c * s_c + b_c), the two-way softmax's 'present' output."""
    z = np.asarray(pooled, dtype=np.float64) * np.asarray(slopes) + np.asarray(intercepts)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def pin_points(cams: np.ndarray, affine: tuple[int, float, float]) -> np.ndarray:
    """(..., C, N, M) -> (..., C, 2) x, y: the projected field's centre (LocalizerParams.affine) of
    each class map's maximum, in pixel-edge coordinates of the network input (pixel i spans [i, i+1))."""
    cams = np.asarray(cams)
    n, m = cams.shape[-2:]
    flat = cams.reshape(cams.shape[:-2] + (n * m,)).argmax(axis=-1)
    rows, cols = np.divmod(flat, m)
    return np.stack([projected_centres(affine, cols), projected_centres(affine, rows)], axis=-1)
