"""Shapes on clutter (training/data/shapes.py): deterministic by seed, right labels, tight boxes."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import DataError
from training.data.registry import load_splits
from training.data.shapes import SHAPE_CLASSES, ShapesOnClutter


def test_same_seed_same_images_other_seed_other_images():
    a, b, c = ShapesOnClutter(8, seed=3), ShapesOnClutter(8, seed=3), ShapesOnClutter(8, seed=4)
    for i in range(8):
        assert np.array_equal(a[i].image, b[i].image) and np.array_equal(a[i].boxes, b[i].boxes)
    assert not np.array_equal(a[0].image, c[0].image)


def test_labels_match_boxes_and_boxes_are_tight_around_the_shape():
    data = ShapesOnClutter(40, seed=1, objects=(1, 3))
    counts = np.zeros(len(SHAPE_CLASSES))
    for i in range(len(data)):
        sample = data[i]
        assert sample.image.shape == (3, 128, 128) and sample.image.dtype == np.float32
        assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
        classes = sample.boxes[:, 0].astype(int)
        assert 1 <= len(sample.boxes) <= 3
        assert set(np.flatnonzero(sample.labels)) == set(classes)
        counts[classes] += 1
        for _, x0, y0, x1, y1 in sample.boxes:
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            assert 0.7 * 30 <= max(x1 - x0, y1 - y0) <= 60  # a 30-60 px square, the shape fills most of it
        # Objects never overlap: the boxes are disjoint.
        for j in range(len(sample.boxes)):
            for k in range(j + 1, len(sample.boxes)):
                p, q = sample.boxes[j, 1:], sample.boxes[k, 1:]
                assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]
    assert (counts > 0).all()  # every class occurs


def test_the_box_is_where_the_shape_was_drawn():
    """Shapes are saturated colours on muted clutter: inside each box the image is far more saturated
    than outside them."""
    sample = ShapesOnClutter(1, seed=5, objects=(2, 2))[0]
    rgb = sample.image
    saturation = rgb.max(axis=0) - rgb.min(axis=0)
    inside = np.zeros((128, 128), dtype=bool)
    for _, x0, y0, x1, y1 in sample.boxes.astype(int):
        inside[y0:y1, x0:x1] = True
        assert saturation[y0:y1, x0:x1].mean() > 0.35
    assert np.median(saturation[~inside]) < 0.3


def test_training_images_are_redrawn_each_epoch_test_images_fixed():
    train, test = ShapesOnClutter(4, seed=0, redraw_each_epoch=True), ShapesOnClutter(4, seed=0)
    first_train, first_test = train[0].image.copy(), test[0].image.copy()
    train.set_epoch(1)
    test.set_epoch(1)
    assert not np.array_equal(first_train, train[0].image)
    assert np.array_equal(first_test, test[0].image)


def test_registry_splits_sizes_canvas_and_errors():
    splits = load_splits("shapes", objects=(1, 3), sizes={"train": 10, "test": 5}, input_size=(96, 96))
    assert (len(splits.train), len(splits.test), len(splits.val)) == (10, 5, 600)
    assert splits.classes == list(SHAPE_CLASSES) and splits.in_channels == 3 and splits.input_size == (96, 96)
    assert splits.test[0].image.shape == (3, 96, 96)
    assert not np.array_equal(splits.train[0].image, splits.test[0].image)  # each split its own seed
    with pytest.raises(DataError, match="square"):
        load_splits("shapes", input_size=(96, 128))
