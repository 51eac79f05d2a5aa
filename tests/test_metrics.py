"""Metrics against cases computed by hand."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from runtime.metrics import (average_precision, box_iou, classification_ap, extent_ap, extent_ap_reference,
                             max_box_acc_v2, pinpoint_ap, precision_recall)


def det(score, box, cls=0):
    return SimpleNamespace(class_index=cls, score=score, box=tuple(box))


def test_average_precision_by_hand():
    # ranked hits: TP, FP, TP with 2 positives -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    precision, recall = precision_recall([0.9, 0.8, 0.7], [True, False, True], 2)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])
    assert average_precision(precision, recall, "all") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(precision, recall, "11") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_box_iou_by_hand():
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 0.0]])


def test_classification_ap_by_hand():
    ap = classification_ap(np.array([[0.9], [0.8], [0.7]]), np.array([[1], [0], [1]]))
    assert ap[0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert np.isnan(classification_ap(np.array([[0.3]]), np.array([[0]]))[0])  # no positive: undefined


def test_extent_ap_duplicates_are_false_positives():
    gt = [np.array([[0, 0, 0, 10, 10]]), np.array([[0, 0, 0, 10, 10]])]
    detections = [
        [det(0.9, (0, 0, 10, 10)), det(0.8, (0, 0, 10, 10))],  # a hit, then a duplicate
        [det(0.7, (5, 5, 15, 15))],  # IoU 25/175 < 0.5: a miss
    ]
    # ranked: TP, FP, FP with 2 ground-truth boxes -> only recall 1/2 at precision 1
    assert extent_ap(detections, gt, 1)[0] == pytest.approx(0.5)
    assert extent_ap(detections, gt, 1, iou_threshold=0.1)[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_extent_ap_ignores_other_classes_and_counts_detections_on_empty_images():
    gt = [np.array([[1, 0, 0, 10, 10]]), np.zeros((0, 5))]
    detections = [[det(0.9, (0, 0, 10, 10), cls=1), det(0.95, (0, 0, 10, 10), cls=0)], [det(0.99, (0, 0, 5, 5), cls=1)]]
    ap = extent_ap(detections, gt, 2)
    assert np.isnan(ap[0])  # class 0 has no ground truth
    assert ap[1] == pytest.approx(0.5)  # FP (empty image) ranked above the TP


def test_pinpoint_ap_with_and_without_tolerance():
    gt = [np.array([[0, 10, 10, 20, 20]]), np.zeros((0, 5)), np.array([[0, 0, 0, 5, 5]])]
    scores = np.array([[0.9], [0.8], [0.7]])
    points = np.array([[[15, 15]], [[1, 1]], [[30, 30]]], dtype=float)
    assert pinpoint_ap(scores, points, gt)[0] == pytest.approx(0.5)  # TP, FP, FP
    assert pinpoint_ap(scores, points, gt, tolerance=25)[0] == pytest.approx(0.5 + 0.5 * 2 / 3)  # TP, FP, TP


def test_max_box_acc_v2_by_hand():
    cam = np.zeros((1, 10, 10), dtype=np.float32)
    cam[0, 2:6, 3:7] = 1.0
    right = np.array([[0, 3, 2, 7, 6]])  # exactly the activated block
    wrong = np.array([[0, 0, 0, 2, 2]])  # elsewhere: at best the whole-image box, IoU 0.04
    result = max_box_acc_v2([cam, cam], [right, wrong], (10, 10))
    assert result["MaxBoxAcc@0.3"] == result["MaxBoxAcc@0.7"] == 0.5
    assert result["MaxBoxAccV2"] == pytest.approx(0.5)


def test_max_box_acc_v2_equals_wsolevaluation_on_random_cams_and_boxes():
    """Our MaxBoxAccV2 against a literal port of wsolevaluation's BoxEvaluator: random smooth and
    noisy CAMs of several sizes, 1-3 boxes per image, square and non-square inputs."""
    from wsol_port import max_box_acc_v2_percent

    rng = np.random.default_rng(7)
    for size in [(64, 64), (48, 80)]:
        cams, boxes = [], []
        for i in range(12):
            n, m = rng.integers(5, 30, size=2)
            cam = rng.normal(size=(n, m)).astype(np.float32)
            if i % 2:
                cam = cv2.GaussianBlur(cam, (0, 0), 1.5) + rng.normal(0, 0.05, (n, m)).astype(np.float32)
            if i == 5:
                cam[:] = 0.25  # constant: wsolevaluation scores it as an all-zero map
            if i in (3, 8):  # activation against the right and bottom edges: boxes clipped to W-1 / H-1
                cam = np.add.outer(np.linspace(0, 1, n), np.linspace(0, 1, m)).astype(np.float32) ** 4
            k = int(rng.integers(1, 4))
            x0 = rng.uniform(0, size[1] - 8, k)
            y0 = rng.uniform(0, size[0] - 8, k)
            w = rng.uniform(4, size[1] / 2, k)
            h = rng.uniform(4, size[0] / 2, k)
            truth = np.stack([x0, y0, np.minimum(x0 + w, size[1] - 1), np.minimum(y0 + h, size[0] - 1)], 1)
            if i in (3, 8):
                truth = np.array([[size[1] * 0.6, size[0] * 0.6, size[1] - 1, size[0] - 1]])
            if i in (4, 10):  # a sparse map, and an object that fills the image: is the cut strictly above?
                cam = np.zeros((n, m), np.float32)
                cam[n // 3, m // 2] = 1.0
                truth = np.array([[0, 0, size[1] - 1, size[0] - 1]])
            if i == 6:  # a flat half that the 8-bit cast makes 0: is the cut strictly above int(t * max)?
                cam = np.zeros((n, m), np.float32)
                cam[:, m // 2:] = 1.0
                truth = np.array([[size[1] / 2, 0, size[1] - 1, size[0] - 1]])
            cams.append(cam)
            boxes.append(truth)
        # The default grid, and coarse grids whose few thresholds leave the maximum nowhere to hide a difference.
        for interval in (0.001, 0.3, 0.45, 0.7, 1.0):
            ours = max_box_acc_v2([c[None] for c in cams], [np.c_[np.zeros(len(b)), b] for b in boxes], size,
                                  cam_curve_interval=interval)
            theirs = max_box_acc_v2_percent(cams, boxes, size, cam_curve_interval=interval)
            assert 100 * ours["MaxBoxAccV2"] == pytest.approx(theirs, abs=1e-9), interval


def test_tied_scores_do_not_depend_on_order():
    """The issue's case: y = [1,0,1,0] and [0,1,1,0] under one tied score give the same AP (0.5)."""
    scores = np.full((4, 1), 0.5)
    a = classification_ap(scores, np.array([[1], [0], [1], [0]]))[0]
    b = classification_ap(scores, np.array([[0], [1], [1], [0]]))[0]
    assert a == b == pytest.approx(0.5)
    with_object, empty = np.array([[0, 0, 0, 10, 10]]), np.zeros((0, 5))
    hit, false_alarm = det(0.7, (0, 0, 10, 10)), det(0.7, (0, 0, 10, 10))
    first = extent_ap([[hit], [false_alarm]], [with_object, empty], 1)[0]
    second = extent_ap([[false_alarm], [hit]], [empty, with_object], 1)[0]
    assert first == second == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(20))
def test_extent_ap_equals_matching_one_detection_at_a_time(seed):
    """Many images, classes and boxes, coarse scores (ties across and within images), duplicates and
    boxes on empty images: the same AP to the last bit."""
    rng = np.random.default_rng(seed)
    classes, images = 3, 40
    gt, detections = [], []
    for _ in range(images):
        truth = []
        for _ in range(int(rng.integers(0, 4))):
            (x, y), side = rng.integers(0, 60, 2), int(rng.integers(5, 30))
            truth.append((int(rng.integers(classes)), x, y, x + side, y + side))
        gt.append(np.array(truth, dtype=np.float64).reshape(-1, 5))
        found = []
        for _ in range(int(rng.integers(0, 8))):
            if len(truth) and rng.random() < 0.7:  # near an object, often a duplicate
                cls, *box = truth[int(rng.integers(len(truth)))]
                box = np.asarray(box, dtype=np.float64) + rng.integers(-6, 7, 4)
                cls = cls if rng.random() < 0.8 else int(rng.integers(classes))
            else:
                cls, box = int(rng.integers(classes)), np.sort(rng.integers(0, 90, 4).reshape(2, 2), axis=0).ravel()  # x0 y0 x1 y1
            found.append(det(float(rng.integers(0, 5)) / 4, box, cls))
        detections.append(found)
    for threshold in (0.3, 0.5, 0.7):
        expected = extent_ap_reference(detections, gt, classes, threshold)
        np.testing.assert_array_equal(extent_ap(detections, gt, classes, iou_threshold=threshold), expected)
