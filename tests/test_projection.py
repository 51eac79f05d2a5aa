"""Projections (runtime/geometry.py) and the relative flood floor (runtime/postprocess.py): what a
CAM pixel is projected onto, and where a mountain stops."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.geometry import PROJECTIONS, projected_affine, validate_chain
from runtime.postprocess import LocalizerParams, localize


def test_each_projection_sets_centre_and_width():
    chain = validate_chain([[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0]])  # LeNet: 32 px field, stride 4
    widths = {"theoretical": 32, "interpolated": 4}
    # Pixel 0 looks at input pixels 0..31. LeNet is unpadded, so its tile is centred there: 14..17.
    centres = {"theoretical": 15.5, "interpolated": 15.5}
    for projection in PROJECTIONS:
        stride, low, high = projected_affine(chain, projection)
        assert stride == 4 and high - low + 1 == widths[projection]
        assert (low + high) / 2 == centres[projection]
    with pytest.raises(ValueError, match="projection must be one of"):
        projected_affine(chain, "effective")


@pytest.mark.parametrize("relative_floor", [0.0, 0.5])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_fast_and_reference_agree_for_every_projection_and_floor(projection, relative_floor):
    chain = validate_chain([[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0]])
    rng = np.random.default_rng(1)
    for _ in range(20):
        cams = cv2.GaussianBlur(rng.normal(0, 1, size=(25, 25, 2)).astype(np.float32), (0, 0), 1.5).transpose(2, 0, 1)
        cams = np.ascontiguousarray(cams * 4)  # smooth maps: mountains of many pixels, several peaks
        ratio_y = None if rng.random() < 0.5 else float(rng.uniform(-0.3, 0.6))  # heights with an r of their own
        params = LocalizerParams([0.5, 0.8], chain, (128, 128), ratio=float(rng.uniform(-0.3, 0.6)),
                                 projection=projection, relative_floor=relative_floor, ratio_y=ratio_y)
        fast, reference = localize(cams, params), localize(cams, params, method="reference")
        assert sorted((d.class_index, d.box, d.score) for d in fast) == \
            sorted((d.class_index, d.box, d.score) for d in reference)


def test_a_single_peak_gets_a_box_of_the_projected_width():
    chain = validate_chain([[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0]])
    cams = np.zeros((1, 25, 25), dtype=np.float32)
    cams[0, 10, 10] = 5.0  # one activated pixel: field 40..71, tile 54..57 (centred on the field)
    boxes = {}
    for projection in PROJECTIONS:
        params = LocalizerParams([1.0], chain, (128, 128), projection=projection)
        (boxes[projection],) = [d.box for d in localize(cams, params)]
    assert boxes["theoretical"] == (40, 40, 72, 72)
    # Bilinear: the lone peak's region above 0 reaches to the next tiles' centres (exclusive), 2S - 1 px.
    assert boxes["interpolated"] == (52, 52, 60, 60)


def test_heights_with_their_own_r_resize_only_heights():
    chain = validate_chain([[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0]])
    cams = np.zeros((1, 25, 25), dtype=np.float32)
    cams[0, 10, 10] = 5.0  # field 40..71 (32 px)
    for method in ("fast", "reference"):
        one = LocalizerParams([1.0], chain, (128, 128), ratio=0.5)
        tall = LocalizerParams([1.0], chain, (128, 128), ratio=0.5, ratio_y=0.25)
        assert [d.box for d in localize(cams, one, method)] == [(48, 48, 64, 64)]  # 32 px * (1 - 0.5) each way
        assert [d.box for d in localize(cams, tall, method)] == [(48, 44, 64, 68)]  # heights 32 px * (1 - 0.25)
    same = LocalizerParams([1.0], chain, (128, 128), ratio=0.5, ratio_y=0.5)
    assert localize(cams, same) == localize(cams, LocalizerParams([1.0], chain, (128, 128), ratio=0.5))
    wide = LocalizerParams([1.0], RESNET_LIKE, (128, 128), projection="interpolated", ratio=-0.5, ratio_y=0.0)
    cams8 = np.zeros((1, 8, 8), dtype=np.float32)
    cams8[0, 3, 3] = 5.0
    (box,) = [d.box for d in localize(cams8, wide)]
    (plain,) = [d.box for d in localize(cams8, LocalizerParams([1.0], RESNET_LIKE, (128, 128), projection="interpolated"))]
    assert box[1::2] == plain[1::2]  # heights untouched
    assert box[2] - box[0] == pytest.approx(1.5 * (plain[2] - plain[0]))  # widths grown by half


RESNET_LIKE = validate_chain([[3, 2, 1]] * 4)  # stride 16, padded: tile of pixel x is [16x, 16x + 15]


def test_interpolated_tile_of_a_padded_network_is_its_stride_tile():
    assert projected_affine(RESNET_LIKE, "interpolated") == (16, 0, 15)


def test_interpolated_boxes_follow_the_object_between_tiles():
    """A blob drawn at input resolution and pooled to the 16 px grid comes back as a box of its own
    size and place, though it straddles tiles: the box is not a union of whole tiles."""
    for x0, y0, side in ((37, 21, 40), (70, 62, 30), (5, 80, 44)):
        image = np.zeros((128, 128), dtype=np.float32)
        image[y0 : y0 + side, x0 : x0 + side] = 1.0
        cam = cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA) * 10  # what a CAM at stride 16 sees
        params = LocalizerParams([1.0], RESNET_LIKE, (128, 128), projection="interpolated", relative_floor=0.5)
        (found,) = localize(cam[None], params)
        bx0, by0, bx1, by1 = found.box
        assert abs((bx0 + bx1) / 2 - (x0 + side / 2)) <= 4 and abs((by0 + by1) / 2 - (y0 + side / 2)) <= 4
        assert 0.7 * side <= bx1 - bx0 <= 1.3 * side
        assert bx0 % 16 or bx1 % 16  # not tile edges


def test_interpolated_relative_floor_shrinks_and_r_resizes_about_the_centre():
    rng = np.random.default_rng(3)
    cam = cv2.GaussianBlur(rng.normal(0, 1, (8, 8)).astype(np.float32), (0, 0), 1.0) * 5
    cam[3, 4] = cam.max() + 2  # one clear peak
    wide = LocalizerParams([cam.max() - 1], RESNET_LIKE, (128, 128), projection="interpolated", floor=-100)
    narrow = LocalizerParams([cam.max() - 1], RESNET_LIKE, (128, 128), projection="interpolated", floor=-100,
                             relative_floor=0.6)
    (a,), (b,) = localize(cam[None], wide), localize(cam[None], narrow)
    assert a.box[0] <= b.box[0] and a.box[1] <= b.box[1] and b.box[2] <= a.box[2] and b.box[3] <= a.box[3]
    assert a.box != b.box
    grown = LocalizerParams([cam.max() - 1], RESNET_LIKE, (128, 128), projection="interpolated", floor=-100,
                            relative_floor=0.6, ratio=-0.5)
    (c,) = localize(cam[None], grown)
    w, h = b.box[2] - b.box[0], b.box[3] - b.box[1]
    assert c.box == pytest.approx((max(0, b.box[0] - w / 4), max(0, b.box[1] - h / 4), min(128, b.box[2] + w / 4),
                                   min(128, b.box[3] + h / 4)))


def test_a_relative_floor_stops_each_mountain_at_a_share_of_its_own_peak():
    chain = validate_chain([[4, 4, 0]])  # cell (i, j) covers input pixels [4j, 4j+4)
    cams = np.zeros((1, 16, 16), dtype=np.float32)
    cams[0, 5, 2:9] = [1, 2, 4, 8, 4, 2, 1]  # one mountain with a peak of 8 at column 5
    cams[0, 12, 10:13] = [1, 3, 1]  # a lower one: its own floor is 0.5 * 3
    params = LocalizerParams([0.5], chain, (64, 64))
    assert sorted(d.box for d in localize(cams, params)) == [(8, 20, 36, 24), (40, 48, 52, 52)]
    params = LocalizerParams([0.5], chain, (64, 64), relative_floor=0.5)  # > 4 around the 8, > 1.5 around the 3
    assert sorted(d.box for d in localize(cams, params)) == [(20, 20, 24, 24), (44, 48, 48, 52)]
    for method in ("fast", "reference"):
        params = LocalizerParams([0.5], chain, (64, 64), relative_floor=0.4)  # >= 3.2 keeps the 4s
        assert sorted(d.box for d in localize(cams, params, method)) == [(16, 20, 28, 24), (44, 48, 48, 52)]


def _one_peak_predictions(sizes: list[tuple[int, int]]):
    """One activated LeNet CAM pixel per image, with a ground-truth box of (width, height) centred on
    its field (32 px square): what tuning sees when every object has that shape."""
    from runtime.evaluation import Predictions

    rng = np.random.default_rng(0)
    cams, boxes = [], []
    for width, height in sizes:
        row, col = rng.integers(4, 21, size=2)
        cam = np.zeros((1, 25, 25), dtype=np.float32)
        cam[0, row, col] = 5.0
        cx, cy = 4 * col + 16, 4 * row + 16  # the field's centre, in pixel-edge coordinates
        cams.append(cam)
        boxes.append(np.array([[0, cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2]]))
    ones = np.ones((len(sizes), 1))
    return Predictions(np.stack(cams), ones, ones, boxes)


def test_tuning_gives_heights_their_own_r_only_where_that_localizes_better():
    from runtime.evaluation import tune_box_settings

    chain = validate_chain([[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0]])
    params = LocalizerParams([1.0], chain, (128, 128))
    # Tall objects, 14 px wide and 26-34 px high: no one r boxes the tallest (IoU < 0.5).
    tall = _one_peak_predictions([(14, h) for h in (26, 30, 34)] * 10)
    shared, _ = tune_box_settings(tall, params, projections=("theoretical",), relative_floors=(0.0,),
                                  separate_heights=False)
    chosen, tried = tune_box_settings(tall, params, projections=("theoretical",), relative_floors=(0.0,))
    assert shared.ratio_y is None and chosen.ratio_y is not None
    assert chosen.ratio > chosen.ratio_y  # widths shrunk more than heights: tall boxes
    assert any(row[3] is not None for row in tried) and all(row[3] is None for row in tried[:37])
    assert max(row[4] for row in tried if row[3] is not None) == 1.0 > max(row[4] for row in tried if row[3] is None)
    # Square objects: one r boxes them all, so heights keep it (a tie goes to the paper's one r).
    square, _ = tune_box_settings(_one_peak_predictions([(16, 16)] * 30), params, projections=("theoretical",),
                                  relative_floors=(0.0,))
    assert square.ratio_y is None and 0 < square.ratio <= 0.5
