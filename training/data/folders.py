"""Image-level-labelled folders (one folder per class, or a CSV `image,labels`) and VOC-style XML
directories. VOC boxes are kept on the samples for evaluation; training reads only `labels`.

Images go through runtime.preprocess, the same function the deployed model's frames go through.
"""
from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.preprocess import preprocess

from .samples import Sample
from runtime.errors import DataError, NotFoundError
from runtime.images import IMAGE_SUFFIXES, is_image_file, read_image

__all__ = ["ImageListDataset", "image_folder", "image_csv", "voc_directory", "voc_split_lists", "folder_split_dirs",
           "IMAGE_SUFFIXES", "LIST_NAMES"]

LIST_NAMES = ("train", "val", "trainval", "test")  # split lists a dataset may bring (VOC's ImageSets/Main)


@dataclass
class ImageListDataset:
    paths: list[Path]
    label_sets: list[list[int]]  # class indices present in each image
    classes: list[str]
    input_size: tuple[int, int]
    channels: int = 3
    resize_mode: str = "resize"
    boxes: list[np.ndarray] = field(default_factory=list)  # per image (K, 5) in original pixels
    keys: list[str] = field(default_factory=list)  # per image: its id in the dataset's split lists
    split_names: list[str] = field(default_factory=list)  # per image: the split a CSV row names ("" if none)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:  # same interface as Mnist128; nothing to redraw
        pass

    def __getitem__(self, index: int) -> Sample:
        path = self.paths[index]
        frame = read_image(path, "color" if self.channels == 3 else "gray")
        image, transform = preprocess(frame, self.input_size, self.channels, self.resize_mode)
        labels = np.zeros(len(self.classes), dtype=np.float32)
        labels[self.label_sets[index]] = 1.0
        boxes = np.zeros((0, 5))
        if self.boxes:
            raw = self.boxes[index]
            boxes = np.concatenate([raw[:, :1], transform.boxes_to_input(raw[:, 1:])], axis=1) if len(raw) else boxes
        return Sample(image, labels, boxes)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def folder_split_dirs(root: str | Path) -> dict[str, Path]:
    """{split: folder} where root holds train/, val/ or test/ folders of class folders
    (root/train/bird/*.jpg); empty for the flat layout root/bird/*.jpg."""
    root = Path(root)
    found = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    if found and all(any(p.is_dir() for p in folder.iterdir()) for folder in found.values()):
        return found
    return {}


def image_folder(root: str | Path, input_size, channels: int = 3, background: str | None = "background",
                 classes: list[str] | None = None) -> ImageListDataset:
    """root/<class>/*.jpg; a folder named `background` (or the given name) holds images with no class.
    With `classes` (those of the train folder), a folder of another name is refused."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    names = [p.name for p in folders if p.name != background]
    if classes is not None and set(names) - set(classes):
        raise DataError(f"{root}: class folder(s) {sorted(set(names) - set(classes))} do not exist in the train "
                         f"folder (classes {classes})")
    defines_classes = classes is None  # the train folder: its sub-folders are the classes
    classes = list(classes) if classes is not None else names
    if not classes:
        raise DataError(f"{root}: expected one sub-folder of images per class (e.g. {root}/bird/*.jpg)")
    paths, label_sets = [], []
    for folder in folders:
        images = _images_in(folder)
        if not images and folder.name != background and defines_classes:  # a class no image would ever show
            raise DataError(f"{folder}: the class folder {folder.name!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                             "add its images or remove the folder")
        for path in images:
            paths.append(path)
            label_sets.append([] if folder.name == background else [classes.index(folder.name)])
    if not paths:
        raise DataError(f"{root}: the class folders contain no images ({', '.join(IMAGE_SUFFIXES)})")
    return ImageListDataset(paths, label_sets, classes, tuple(input_size), channels, keys=[str(p) for p in paths])


def image_csv(csv_path: str | Path, input_size, channels: int = 3) -> ImageListDataset:
    """A CSV with columns `image,labels` and optionally `split` (train, val or test); labels separated
    by ';' or spaces, empty for none. Image paths are relative to the CSV's folder."""
    csv_path = Path(csv_path)
    rows = list(csv.DictReader(csv_path.open(newline="")))
    if not rows or "image" not in rows[0] or "labels" not in rows[0]:
        raise DataError(f"{csv_path}: expected a header `image,labels` and at least one row")
    names = [[t for t in row["labels"].replace(";", " ").split() if t] for row in rows]
    classes = sorted({n for row in names for n in row})
    if not classes:
        raise DataError(f"{csv_path}: no row names a class; nothing to learn")
    paths = [csv_path.parent / row["image"] for row in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise NotFoundError(f"{csv_path}: {len(missing)} images missing, first {missing[0]}")
    split_names = [(row.get("split") or "").strip().lower() for row in rows]
    unknown = sorted(set(split_names) - {"", "train", "val", "test"})
    if unknown:
        raise DataError(f"{csv_path}: the split column may hold train, val or test (or nothing), not {unknown}")
    return ImageListDataset(paths, [[classes.index(n) for n in row] for row in names], classes, tuple(input_size),
                            channels, keys=[row["image"] for row in rows], split_names=split_names)


def voc_split_lists(root: str | Path) -> dict[str, list[str]]:
    """The image ids of root/ImageSets/Main/{train,val,trainval,test}.txt, for those that exist."""
    main = Path(root) / "ImageSets" / "Main"
    return {name: [line.split()[0] for line in (main / f"{name}.txt").read_text().splitlines() if line.strip()]
            for name in LIST_NAMES if (main / f"{name}.txt").is_file()}


def _voc_size(xml: Path, tree) -> tuple[float, float] | None:
    """(width, height) from <size>, when the annotation has one."""
    size = tree.find("size")
    try:
        return (float(size.findtext("width")), float(size.findtext("height"))) if size is not None else None
    except (TypeError, ValueError) as error:
        raise DataError(f"{xml}: <size> is not a width and a height in pixels") from error


def _voc_object(xml: Path, number: int, obj, size: tuple[float, float] | None):
    """(name, difficult, [xmin, ymin, xmax, ymax] or None), refusing what would train or score on nonsense:
    an object without a name, a box whose corners are missing, swapped or outside the image."""
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise DataError(f"{xml}: <object> {number} has no <name>; every object needs its class")
    difficult = (obj.findtext("difficult") or "0").strip() == "1"
    box = obj.find("bndbox")
    if box is None:
        return name, difficult, None
    try:
        x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError) as error:
        raise DataError(f"{xml}: <object> {number} ({name}) has a <bndbox> without numeric xmin/ymin/xmax/ymax") from error
    if x1 < x0 or y1 < y0:
        raise DataError(f"{xml}: <object> {number} ({name}) has xmax < xmin or ymax < ymin ({x0:g},{y0:g},{x1:g},{y1:g})")
    if size is not None and (x0 < 0 or y0 < 0 or x1 > size[0] + 1 or y1 > size[1] + 1):
        raise DataError(f"{xml}: <object> {number} ({name}) box ({x0:g},{y0:g},{x1:g},{y1:g}) lies outside the "
                         f"{size[0]:g}x{size[1]:g} image")
    return name, difficult, [x0, y0, x1, y1]


def voc_directory(
    root: str | Path, input_size, ids: list[str] | None = None, classes: list[str] | None = None, channels: int = 3,
    keep_difficult: bool = False,
) -> ImageListDataset:
    """root/Annotations/*.xml and root/JPEGImages/; `ids` selects images (default: every annotation).

    Image labels are the classes of the objects present; boxes stay for evaluation. Difficult
    objects count for the image label but are left out of the evaluation boxes unless asked.
    """
    root = Path(root)
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DataError(f"{root}: no Annotations/ folder; expected a VOC-style directory")
    xmls = [annotations / f"{i}.xml" for i in ids] if ids is not None else sorted(annotations.glob("*.xml"))
    if not xmls:
        raise DataError(f"{annotations}: no XML annotations")
    parsed = []
    for xml in xmls:
        try:
            tree = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as error:
            raise DataError(f"{xml}: cannot parse annotation ({error})") from error
        filename = tree.findtext("filename") or (xml.stem + ".jpg")
        objects = [_voc_object(xml, number, obj, _voc_size(xml, tree)) for number, obj in enumerate(tree.iter("object"), 1)]
        parsed.append((root / "JPEGImages" / filename, objects))
    classes = classes or sorted({name for _, objs in parsed for name, _, _ in objs})
    paths, label_sets, boxes = [], [], []
    for path, objects in parsed:
        paths.append(path)
        label_sets.append(sorted({classes.index(n) for n, _, _ in objects if n in classes}))
        # VOC boxes are 1-based inclusive pixels: [xmin-1, xmax) in our edge coordinates.
        rows = [(classes.index(n), c[0] - 1, c[1] - 1, c[2], c[3]) for n, d, c in objects
                if n in classes and c is not None and (keep_difficult or not d)]
        boxes.append(np.array(rows, dtype=np.float64).reshape(-1, 5))
    return ImageListDataset(paths, label_sets, classes, tuple(input_size), channels, boxes=boxes,
                            keys=[xml.stem for xml in xmls])
