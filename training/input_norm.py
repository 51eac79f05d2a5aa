"""How train-cam normalises a model's input: the mean and std folded into the graph (ModelConfig.mean,
.std), so that exported models, the runtime and edge_app take [0, 1] pixels and never need to know.

Why it is a choice at all: LeNet has no batch normalisation, so it sees its pixels as they come. On
the generated sets that is what Table 1 and the multi-class benchmark were measured with. On images
read from disk it is not safe: on a VOC-layout set of coloured letters on grey clutter (pixel mean
0.43, sd 0.06; docs/results.md, "Input normalisation"), LeNet with table1's schedule stayed at the
class-prior loss for all its epochs with C1's ReLUs dead, and with the training split's own statistics
it learned the set. torchvision backbones keep ImageNet's statistics, which their weights expect.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .model import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AUTO", "INPUT_NORMS", "GENERATED_DATASETS", "resolve_input_norm", "measured_statistics", "input_normalisation"]

AUTO = "auto"  # as train-cam spells it for every chosen-for-you option
INPUT_NORMS = ("imagenet", "measured", "none")
# Datasets spamcam draws itself: their pixel statistics are fixed by their generator, and their
# published results (docs/results.md) were measured with LeNet seeing raw [0, 1] pixels.
GENERATED_DATASETS = ("mnist128", "embedded", "shapes")
SAMPLE_IMAGES = 512  # training images the statistics are measured on: enough for 3 digits, ~1 s to read
MIN_STD = 1e-3  # a constant channel (grey images stored as RGB) must not divide by ~0


def resolve_input_norm(choice: str, backbone: str, dataset: str) -> str:
    """'auto' made concrete: ImageNet's statistics for a torchvision backbone, none for LeNet on a
    generated set, the training split's own for LeNet on data read from disk."""
    if choice != AUTO:
        return choice
    if not backbone.startswith("lenet"):
        return "imagenet"
    return "none" if dataset.partition(":")[0] in GENERATED_DATASETS else "measured"


def measured_statistics(split: Sequence, channels: int, samples: int = SAMPLE_IMAGES) -> tuple[list[float], list[float]]:
    """Each channel's mean and std over up to `samples` images spread evenly through the split."""
    count = len(split)
    if count == 0:
        return [0.0] * channels, [1.0] * channels
    indices = np.unique(np.linspace(0, count - 1, num=min(samples, count)).round().astype(int))
    total = np.zeros(channels)
    squares = np.zeros(channels)
    pixels = 0
    for index in indices:
        image = np.asarray(split[int(index)].image, dtype=np.float64)  # (C, H, W) in [0, 1]
        flat = image.reshape(image.shape[0], -1)
        if flat.shape[0] != channels:
            flat = np.broadcast_to(flat.mean(axis=0), (channels, flat.shape[1]))
        total += flat.sum(axis=1)
        squares += (flat ** 2).sum(axis=1)
        pixels += flat.shape[1]
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean ** 2, 0.0))
    return [round(float(m), 6) for m in mean], [round(float(max(s, MIN_STD)), 6) for s in std]


def input_normalisation(kind: str, split: Sequence, channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel for a resolved `kind` (INPUT_NORMS)."""
    if kind == "imagenet":
        if channels != len(IMAGENET_MEAN):
            raise ValueError(f"ImageNet statistics are for 3 channels, the model has {channels}")
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if kind == "measured":
        return measured_statistics(split, channels)
    if kind == "none":
        return [0.0] * channels, [1.0] * channels
    raise ValueError(f"input normalisation must be one of {', '.join(INPUT_NORMS)}, got {kind!r}")
