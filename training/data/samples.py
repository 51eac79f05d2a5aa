"""The one sample format every dataset yields, so training, evaluation and calibration share code."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample", "RedrawnEachEpoch"]


@dataclass
class Sample:
    image: np.ndarray  # (C, H, W) float32 in [0, 1], already at the model's input size
    labels: np.ndarray  # (num_classes,) float32 multi-hot: which classes are present
    boxes: np.ndarray  # (K, 5) float64: class index, x0, y0, x1, y1 (pixel edges, x1/y1 exclusive);
    #                    evaluation only, never used by training


class RedrawnEachEpoch:
    """For generated splits (MNIST128, shapes): image `index` comes from a generator seeded by (seed,
    index, epoch), so the same seed gives the same images on every machine, a test split never moves
    and a training split (redraw_each_epoch) is redrawn every epoch. The dataclass provides `seed`,
    `epoch` and `redraw_each_epoch`."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, index: int) -> np.random.Generator:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return np.random.default_rng([self.seed, index, self.epoch if self.redraw_each_epoch else 0])
