"""Shapes on clutter: a generated colour, multi-class localization set for deep backbones (ours).

MNIST128 is grey, its objects are small and its background is black: LeNet's home. The backbones
users deploy (resnet18/50, mobilenet_v3_large, VGG-16) take colour images and their receptive
fields are larger than the whole canvas, and no natural-image detection dataset is reachable here.
This set stands in for one: six classes of filled shapes (circle, square, triangle, cross, star,
ring) in random saturated colours, 30-60 px, rotated, 1-3 per canvas without overlap, on a
background of low-frequency colour noise, fine noise, line segments and small blobs (distractors
smaller than any object). Colour says nothing about the class; only the shape does.

Ground truth is each shape's tight box (its drawn pixels). Like MNIST128 the generator is seeded by
(seed, index, epoch): the same seed gives the same images on every machine, test images never move,
and training images are redrawn every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .samples import RedrawnEachEpoch, Sample
from runtime.errors import ConfigError

__all__ = ["ShapesOnClutter", "SHAPE_CLASSES", "SHAPE_SIZES"]

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "star", "ring")
SHAPE_SIZES = (30, 60)  # side of an object's square, px at a 128 px canvas (scaled with the canvas)
_SUPERSAMPLE = 4  # shapes are drawn 4x larger and area-averaged: anti-aliased edges, exact coverage


def _polygon(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The shape's outline(s) in a unit square [-1, 1]^2, rotated at random (circle and ring: none needed)."""
    if kind == "square":
        points = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64) * 0.72
    elif kind == "triangle":
        angles = np.radians([90, 210, 330])
        points = np.stack([np.cos(angles), -np.sin(angles)], 1)
    elif kind == "cross":
        a, b = 1.0, 0.34
        points = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b),
                           (-a, -b), (-b, -b)], dtype=np.float64)
    elif kind == "star":
        angles = np.radians(90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        points = np.stack([radius * np.cos(angles), -radius * np.sin(angles)], 1)
    else:
        raise ValueError(kind)
    theta = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return [points @ rotation.T]


def _shape_mask(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """(side, side) float32 coverage in [0, 1] of one shape filling most of its square."""
    big = side * _SUPERSAMPLE
    canvas = np.zeros((big, big), dtype=np.uint8)
    centre, radius = (big - 1) / 2.0, big / 2.0 - _SUPERSAMPLE
    if kind in ("circle", "ring"):
        cv2.circle(canvas, (int(round(centre)), int(round(centre))), int(radius), 255, -1)
        if kind == "ring":
            cv2.circle(canvas, (int(round(centre)), int(round(centre))), int(radius * 0.55), 0, -1)
    else:
        polygons = [np.round(centre + p * radius).astype(np.int32) for p in _polygon(kind, rng)]
        cv2.fillPoly(canvas, polygons, 255)
    return cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(170, 255), rng.uniform(150, 255)]]], dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 background: muted low-frequency colour, fine noise, lines and small blobs."""
    coarse = rng.uniform(0.15, 0.85, size=(4, 4, 3)).astype(np.float32)
    grey = coarse.mean(axis=2, keepdims=True)
    coarse = 0.5 * coarse + 0.5 * grey  # muted: the objects' saturated colours stand out by shape, not hue alone
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 0.04, size=image.shape).astype(np.float32)
    scale = size / 128.0
    for _ in range(int(rng.integers(4, 11))):  # line segments
        p, q = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        cv2.line(image, p, q, tuple(float(v) for v in rng.uniform(0, 1, 3)), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 9))):  # blobs no larger than a third of the smallest object
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(max(1, v * scale)) for v in rng.integers(2, 6, 2))
        colour = tuple(float(v) for v in rng.uniform(0, 1, 3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return image


def _overlaps(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]], gap: int) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < px1 + gap and px0 < x1 + gap and y0 < py1 + gap and py0 < y1 + gap for px0, py0, px1, py1 in placed)


@dataclass
class ShapesOnClutter(RedrawnEachEpoch):
    count: int  # images in this split
    canvas: int = 128
    seed: int = 0
    redraw_each_epoch: bool = False  # True for training splits
    objects: tuple[int, int] = (1, 3)  # min, max shapes per canvas
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError("shapes: a split needs at least one image")
        if self.objects[0] < 1 or self.objects[1] < self.objects[0]:
            raise ConfigError(f"objects per canvas must be 1 <= min <= max, got {self.objects}")
        if self.canvas < 64:
            raise ConfigError(f"shapes needs a canvas of at least 64 px, got {self.canvas}")

    @property
    def classes(self) -> list[str]:
        return list(SHAPE_CLASSES)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        rng = self._generator(index)
        size = self.canvas
        image = _clutter(rng, size)
        wanted = int(rng.integers(self.objects[0], self.objects[1] + 1))
        low, high = (int(round(v * size / 128.0)) for v in SHAPE_SIZES)
        placed, boxes = [], []
        for _ in range(wanted):
            kind = int(rng.integers(len(SHAPE_CLASSES)))
            side = int(rng.integers(low, high + 1))
            for _try in range(50):
                x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
                if not _overlaps((x, y, x + side, y + side), placed, gap=2):
                    break
            else:
                continue  # no room without overlap: fewer objects on this canvas
            mask = _shape_mask(SHAPE_CLASSES[kind], side, rng)
            region = image[y : y + side, x : x + side]
            region[:] = region * (1 - mask[..., None]) + _saturated_colour(rng) * mask[..., None]
            rows, cols = np.nonzero(mask > 0.5)
            placed.append((x, y, x + side, y + side))
            boxes.append((kind, x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1))
        labels = np.zeros(len(SHAPE_CLASSES), dtype=np.float32)
        labels[[b[0] for b in boxes]] = 1.0
        image = np.clip(image, 0, 1).transpose(2, 0, 1).copy()
        return Sample(image, labels, np.array(boxes, dtype=np.float64).reshape(-1, 5))
