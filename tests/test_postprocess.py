"""The fast post-processing gives exactly the reference's boxes; edge cases; mapping to frames."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from runtime.geometry import receptive_field
from runtime.postprocess import (LocalizerParams, backprojected_area, find_peaks, localize, localize_batch,
                                 localizer_over_ratios, mountains)
from runtime.preprocess import preprocess

LENET = ((5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0), (5, 1, 0), (1, 1, 0))
VGG_LIKE = ((3, 1, 1), (3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0), (1, 1, 0))
STRIDED = ((7, 2, 3), (3, 2, 1), (3, 2, 1), (1, 1, 0))

layers = st.tuples(st.integers(1, 7), st.integers(1, 3), st.integers(0, 3)).filter(lambda l: l[2] < l[0] or l[2] == 0)
chains = st.one_of(st.sampled_from([LENET, VGG_LIKE, STRIDED]), st.lists(layers, min_size=1, max_size=5).map(tuple))


def _key(detections):
    return sorted((d.class_index, d.box, d.score) for d in detections)


@st.composite
def cases(draw):
    classes = draw(st.integers(1, 3))
    n, m = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    quantised = draw(st.booleans())  # coarse values: plateaus and ties everywhere
    elements = st.integers(-3, 3).map(float) if quantised else st.floats(-4, 4, allow_nan=False, width=32)
    cams = draw(arrays(np.float32, (classes, n, m), elements=elements))
    thresholds = draw(st.lists(st.one_of(st.floats(-2, 3), st.none()), min_size=classes, max_size=classes))
    params = LocalizerParams(
        thresholds=thresholds,
        chain=draw(chains),
        input_size=(draw(st.integers(8, 160)), draw(st.integers(8, 160))),
        ratio=draw(st.one_of(st.sampled_from([0.0, 0.5, -0.5, 1.0, 1.5]), st.floats(-1.5, 1.5))),
        floor=draw(st.sampled_from([0.0, -1.0, 1.0])),
    )
    return cams, params


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_equals_reference(case):
    cams, params = case
    assert _key(localize(cams, params, "fast")) == _key(localize(cams, params, "reference"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.lists(st.tuples(st.floats(-1.5, 1.5), st.one_of(st.none(), st.floats(-1.5, 1.5))), min_size=1,
                         max_size=4), st.sampled_from([0.0, 0.4]), st.sampled_from(["theoretical", "interpolated"]))
def test_flooding_once_for_many_ratios_gives_the_boxes_of_each(case, ratios, relative_floor, projection):
    """Tuning r floods each image's mountains once and projects them at every r: the detections must be
    exactly localize_batch's at that r, order and scores included."""
    from dataclasses import replace

    cams, params = case
    params = replace(params, relative_floor=relative_floor, projection=projection)
    batch = np.stack([cams, cams[..., ::-1].copy()])  # two images
    boxes_at = localizer_over_ratios(batch, params)
    for ratio, ratio_y in ratios:
        assert boxes_at(ratio, ratio_y) == localize_batch(batch, replace(params, ratio=ratio, ratio_y=ratio_y))


def _params(**kw):
    base = dict(thresholds=[0.5], chain=LENET, input_size=(128, 128), ratio=0.0, floor=0.0)
    base.update(kw)
    return LocalizerParams(**base)


def test_single_peak_box_is_the_receptive_field_union():
    cam = np.full((1, 25, 25), -1.0, dtype=np.float32)
    cam[0, 10, 12] = 2.0  # one activated pixel: its receptive field is the box
    (det,) = localize(cam, _params())
    x0, x1 = receptive_field(LENET, 12)
    y0, y1 = receptive_field(LENET, 10)
    assert det.box == (x0, y0, x1 + 1, y1 + 1) and det.score == 2.0
    cam[0, 10, 13] = 1.0  # a lower neighbour joins the mountain (below t_c but activated)
    (det,) = localize(cam, _params())
    assert det.box == (x0, y0, receptive_field(LENET, 13)[1] + 1, y1 + 1)


def test_two_separate_mountains_give_two_boxes_and_a_valley_splits_nothing_it_should_not():
    cam = np.full((1, 25, 25), -1.0, dtype=np.float32)
    cam[0, 3, 3] = 3.0
    cam[0, 20, 20] = 2.0
    boxes = sorted(localize(cam, _params()), key=lambda d: -d.score)
    assert [d.score for d in boxes] == [3.0, 2.0]
    assert boxes[0].box[2] <= boxes[1].box[0]


def test_flat_and_below_threshold_maps_give_nothing():
    assert localize(np.zeros((2, 8, 8), np.float32), _params(thresholds=[0.5, 0.5])) == []
    assert localize(np.full((1, 8, 8), 0.3, np.float32), _params()) == []
    # A flat map above threshold is one plateau peak: one box covering the clipped fields.
    (det,) = localize(np.full((1, 25, 25), 1.0, np.float32), _params())
    assert det.box == (0, 0, 128, 128)


def test_plateau_and_tied_peaks():
    cam = np.full((1, 10, 10), -1.0, dtype=np.float32)
    cam[0, 4:6, 4:7] = 1.0  # a plateau: every pixel is a peak, one mountain
    peaks = find_peaks(cam, np.array([0.5]))
    assert peaks.sum() == 6
    assert len(localize(cam, _params())) == 1


def test_peaks_on_borders_are_found():
    cam = np.full((1, 6, 6), -1.0, dtype=np.float32)
    cam[0, 0, 0] = 1.0
    cam[0, 5, 5] = 1.0
    assert find_peaks(cam, np.array([0.5])).sum() == 2
    assert len(localize(cam, _params())) == 1  # 32 px fields 20 px apart overlap: one box
    assert len(localize(cam, _params(ratio=0.5))) == 2  # shrunk by half they separate


def test_flood_fill_follows_non_increasing_paths_only():
    cam = np.array([[[3, 2, 1, 2, 0.5]]], dtype=np.float32)  # rises again after the valley at 1
    reach = mountains(cam, find_peaks(cam, np.array([2.5])), floor=0.0)
    assert reach[0, 0].tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cams_are_a_clear_error(bad):
    cam = np.zeros((1, 4, 4), np.float32)
    cam[0, 1, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        localize(cam, _params())


def test_wrong_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="3 classes but 1 thresholds"):
        localize(np.zeros((3, 4, 4), np.float32), _params())
    with pytest.raises(ValueError, match="4 dimensions"):
        localize_batch(np.zeros((3, 4, 4), np.float32), _params())


def test_unusable_class_is_never_localized():
    cam = np.full((2, 6, 6), 5.0, dtype=np.float32)
    detections = localize(cam, _params(thresholds=[None, 0.5]))
    assert {d.class_index for d in detections} == {1}


def test_backprojected_area_is_what_the_boxes_bound():
    rng = np.random.default_rng(1)
    cam = rng.normal(size=(1, 25, 25)).astype(np.float32)
    params = _params(ratio=0.4)
    area = backprojected_area(cam, params)[0]
    for det in localize(cam, params):
        x0, y0, x1, y1 = (int(v) for v in det.box)
        inside = area[y0:y1, x0:x1]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_boxes_map_back_to_the_original_frame(mode):
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[60:120, 200:260] = 255  # an object in frame pixels [200, 260) x [60, 120)
    image, transform = preprocess(frame, (128, 128), 1, mode)
    ys, xs = np.nonzero(image[0] > 0.5)
    box_in_input = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    back = transform.boxes_to_frame(box_in_input)[0]
    np.testing.assert_allclose(back, [200, 60, 260, 120], atol=3.0)
    if mode == "letterbox":
        assert image[0, :10].max() == 0 and transform.pad_y > 0  # black bars above and below


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("channels", [1, 3])
def test_8bit_frames_match_the_float_path_within_rounding(mode, channels):
    """8-bit frames are converted and resized before they become float (fast); the result must equal
    the exact float computation up to the 1/255 rounding of 8-bit resizing."""
    import cv2

    rng = np.random.default_rng(4)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (7, 7), 2)
    fast, transform = preprocess(frame, (128, 160), channels, mode)
    exact, same = preprocess(frame.astype(np.float32) / 255, (128, 160), channels, mode)
    assert fast.dtype == np.float32 and fast.shape == exact.shape == (channels, 128, 160)
    assert transform == same
    assert np.abs(fast - exact).max() <= 1.01 / 255
    assert np.abs(fast - exact).mean() < 0.3 / 255


def test_an_interpolated_map_whose_first_tile_begins_before_the_input_is_cropped_there():
    """A 1x1 stride-2 layer: CAM pixel x's tile is input rows [2x - 1, 2x], so the resized map's first
    row lies before the input and is cut off, and input row 7, in no tile, reads -inf (hypothesis found
    this shape crashing the tuning's flood)."""
    import cv2

    from runtime.postprocess import interpolated_map

    params = LocalizerParams([0.5], [[1, 2, 0]], (8, 8), projection="interpolated")
    assert params.affine[1] == -1
    cam = np.arange(16, dtype=np.float32).reshape(4, 4)
    up = cv2.resize(cam, (8, 8), interpolation=cv2.INTER_LINEAR)
    out = interpolated_map(cam, params)
    assert np.array_equal(out[:7, :7], up[1:, 1:])
    assert np.isneginf(out[7]).all() and np.isneginf(out[:, 7]).all()
    assert localize(cam[None], params)  # floods and projects without failing
