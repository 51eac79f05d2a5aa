"""Calibration images, read through exactly the runtime's pre-processing.

A calibration set is a folder of images (any layout; searched recursively) or a dataset spec
(`mnist128`, `embedded`, `voc:PATH`, `folder:PATH`, `csv:PATH`). Either way the arrays are what the
deployed model will see, so the INT8 ranges fit real inputs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.model_info import ModelInfo
from runtime.preprocess import preprocess
from runtime.errors import DataError
from runtime.images import IMAGE_SUFFIXES, is_image_file, read_image
from training.data.registry import DATASET_SPECS, is_dataset_spec, load_splits  # numpy-only: no torch needed

__all__ = ["CalibrationError", "calibration_images", "IMAGE_SUFFIXES"]



class CalibrationError(DataError):
    """The calibration set is empty or unreadable; the message says what to give instead."""


def _folder_images(folder: Path, info: ModelInfo, count: int) -> Iterator[np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if is_image_file(p))
    if not paths:
        raise CalibrationError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a "
                               "folder of a few hundred frames like the ones the model will see, or a dataset spec "
                               "such as 'mnist128'")
    # Spread the picks over the whole folder (frames of one video are alike; take every k-th).
    picks = paths if len(paths) <= count else [paths[int(i)] for i in np.linspace(0, len(paths) - 1, count)]
    unreadable = []
    produced = 0
    for path in picks:  # one bad file costs that file, not the calibration run
        try:
            frame = read_image(path, "unchanged")
        except DataError as error:
            unreadable.append(str(error))
            continue
        produced += 1
        yield preprocess(frame, tuple(info.input_size), info.in_channels, info.resize_mode)[0]
    if unreadable:
        print(f"quantize-int8: skipped {len(unreadable)} of {len(picks)} calibration images that cannot be read; "
              f"first: {unreadable[0]}", file=sys.stderr, flush=True)
    if produced == 0:
        raise CalibrationError(f"none of the {len(picks)} calibration images in {folder} could be read "
                               f"(first: {unreadable[0]})")


def _dataset_images(spec: str, info: ModelInfo, count: int, mnist_dir: str | None) -> Iterator[np.ndarray]:
    # Calibrate on the training split: the test split stays unseen for the accuracy check.
    splits = load_splits(spec, input_size=tuple(info.input_size), channels=info.in_channels, mnist_dir=mnist_dir,
                         sizes={"train": count})
    if len(splits.train) == 0:
        raise CalibrationError(f"dataset {spec!r} has no training images to calibrate with")
    for index in range(min(count, len(splits.train))):
        image = splits.train[index].image  # (C, H, W) in [0, 1]
        if image.shape[0] != info.in_channels or list(image.shape[1:]) != list(info.input_size):
            # e.g. MNIST128's fixed 128 px grey canvases for an RGB model at 320 px: treat it as a frame
            frame = (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
            image = preprocess(frame, tuple(info.input_size), info.in_channels, info.resize_mode)[0]
        yield image


def calibration_images(source: str | Path, info: ModelInfo, count: int = 256,
                       mnist_dir: str | None = None) -> list[np.ndarray]:
    """Up to `count` pre-processed images (C, H, W) float32 from a folder or a dataset spec."""
    if count < 1:
        raise CalibrationError(f"the calibration sample count must be positive, got {count}")
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        images = list(_folder_images(path, info, count))
    elif is_dataset_spec(text):
        images = list(_dataset_images(text, info, count, mnist_dir))
    elif path.exists():
        raise CalibrationError(f"{path} is a file; give a folder of calibration images or a dataset spec")
    else:
        raise CalibrationError(f"calibration set {text!r} not found: give an existing folder of images or a dataset "
                               f"spec ({DATASET_SPECS})")
    return images
