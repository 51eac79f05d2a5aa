"""The one sample format every dataset yields, so training, evaluation and calibration share code."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample"]


@dataclass
class Sample:
    image: np.ndarray  # (C, H, W) float32 in [0, 1], already at the model's input size
    labels: np.ndarray  # (num_classes,) float32 multi-hot: which classes are present
    boxes: np.ndarray  # (K, 5) float64: class index, x0, y0, x1, y1 (pixel edges, x1/y1 exclusive);
    #                    evaluation only, never used by training
