"""Box confidence (P(present) of the instance), gating, one class per object, the box census, the
multi-class MNIST128 and the at-chance detector: closed-form checks on CAMs built by hand, and the
generator's own output."""
from dataclasses import replace

import numpy as np
import pytest

from runtime.confidence import BoxPolicy, ClassifierHead, gate, instance_confidences, suppress_overlaps, with_confidence
from runtime.evaluation import box_census
from runtime.postprocess import Detection, LocalizerParams, localize
from runtime.scores import class_probabilities, pool_cams

CHAIN = [[4, 4, 0]]  # one 4x4 stride-4 layer: CAM cell (i, j) covers input pixels [4j, 4j+4)
SIZE = (64, 64)  # a 16x16 CAM
PARAMS = LocalizerParams([1.5, 1.5], CHAIN, SIZE)  # where the cells project; floor 0


def _head(pooling, classes=2, slope=2.0, intercept=-3.0):
    return ClassifierHead(pooling, (1, 2, 5, "N"), np.full(classes, slope), np.full(classes, intercept))


def _cams(classes=2):
    cams = np.full((classes, 16, 16), -1.0)
    cams[0, 2:5, 2:5] = 3.0  # instance A of class 0, top left
    cams[0, 10:13, 10:13] = 2.0  # instance B of class 0, bottom right
    return cams


BOX_A = (8.0, 8.0, 20.0, 20.0)
BOX_B = (40.0, 40.0, 52.0, 52.0)


@pytest.mark.parametrize("pooling", ["gmp", "gap", "spam"])
def test_confidence_is_in_0_1_and_monotone_in_its_own_evidence_only(pooling):
    head, cams = _head(pooling), _cams()
    dets = [Detection(0, 3.0, BOX_A), Detection(0, 2.0, BOX_B)]
    base = instance_confidences(cams, dets, head, PARAMS)
    assert ((base >= 0) & (base <= 1)).all()
    stronger = cams.copy()
    stronger[0, 3, 3] = 6.0  # more evidence inside A
    raised = instance_confidences(stronger, dets, head, PARAMS)
    assert raised[0] > base[0] and raised[1] == pytest.approx(base[1])  # B does not see A's evidence
    weaker = cams.copy()
    weaker[0, 10:13, 10:13] = 1.0  # less evidence inside B
    lowered = instance_confidences(weaker, dets, head, PARAMS)
    assert lowered[1] < base[1] and lowered[0] == pytest.approx(base[0])


@pytest.mark.parametrize("pooling", ["gmp", "gap", "spam"])
def test_a_lone_instance_gets_the_image_level_probability(pooling):
    head, cams = _head(pooling), _cams()
    cams[0, 10:13, 10:13] = -1.0  # only A is left
    (confidence,) = instance_confidences(cams, [Detection(0, 3.0, BOX_A)], head, PARAMS)
    image = class_probabilities(pool_cams(cams[:1], pooling, head.kernels), head.slopes[:1], head.intercepts[:1])
    assert confidence == pytest.approx(float(image[0]))


def test_for_gmp_confidence_above_one_half_is_the_papers_peak_above_t_c():
    head = _head("gmp")
    threshold = -head.intercepts[0] / head.slopes[0]  # t_c = 1.5
    for peak in (1.0, 1.49, 1.51, 4.0):
        cams = np.full((1, 16, 16), -1.0)
        cams[0, 3, 3] = peak
        (confidence,) = instance_confidences(cams, [Detection(0, peak, BOX_A)], _head("gmp", 1), PARAMS)
        assert (confidence > 0.5) == (peak > threshold)


def test_gating_drops_the_boxes_of_a_class_the_model_calls_absent():
    head = _head("spam", slope=2.0, intercept=-4.0)  # t_c = 2 on the pooled (SPAM) score
    cams = np.full((2, 16, 16), -1.0)
    cams[0, 2:6, 2:6] = 5.0  # class 0: a clear object
    cams[1, 9, 9] = 2.5  # class 1: one cell above t_c, but SPAM's pooled score stays far below it
    params = LocalizerParams([2.0, 2.0], CHAIN, SIZE)
    found = localize(cams, params)
    assert sorted({d.class_index for d in found}) == [0, 1]  # the paper's rule keeps both
    kept = gate(with_confidence(found, cams, head, PARAMS), 0.5)
    assert [d.class_index for d in kept] == [0]
    assert all(0 <= d.confidence <= 1 for d in with_confidence(found, cams, head, PARAMS))


def test_gating_drops_a_peak_form_box_of_a_class_the_image_calls_absent():
    """The peak form can exceed the image-level P(present): a high lone peak on a class the pooled map
    calls absent. The deployed policy drops it; ranking everything (no threshold) keeps it."""
    head = _head("spam", slope=2.0, intercept=-4.0)
    cams = np.full((2, 16, 16), -1.0)
    cams[0, 2:6, 2:6] = 5.0  # class 0: a clear object
    cams[1, 9, 9] = 2.5  # class 1: one strong cell, pooled far below t_c
    present = head.probabilities(cams)
    assert present[0] > 0.5 > present[1]
    peak_head = replace(head, peak_scales=np.full(2, 1.0))  # sigma(2 * peak - 4): 0.73 for the class-1 peak
    found = localize(cams, LocalizerParams([2.0, 2.0], CHAIN, SIZE))
    scored = with_confidence(found, cams, peak_head, PARAMS)
    assert any(d.class_index == 1 and d.confidence > 0.5 for d in scored)  # its confidence alone would keep it
    kept = BoxPolicy(min_confidence=0.5).apply(found, cams, peak_head, PARAMS)
    assert [d.class_index for d in kept] == [0]
    assert {d.class_index for d in BoxPolicy().apply(found, cams, peak_head, PARAMS)} == {0, 1}
    assert [d.class_index for d in gate(scored, 0.5)] == [0, 1]  # without the image's probabilities


@pytest.mark.parametrize("pooling", ["gmp", "gap", "spam"])
def test_the_instance_form_never_exceeds_its_class_image_probability(pooling):
    """Why gating on the image's P(present) too changes nothing for the instance form."""
    head = _head(pooling, classes=3, slope=1.5, intercept=-2.0)
    rng = np.random.default_rng(0)
    params = LocalizerParams([1.0, 1.0, 1.0], CHAIN, SIZE)
    for _ in range(20):
        cams = rng.normal(0.0, 1.5, (3, 16, 16))
        found = localize(cams, params)
        confidences = instance_confidences(cams, found, head, params)
        present = head.probabilities(cams)
        assert found and (confidences <= present[[d.class_index for d in found]] + 1e-12).all()


def test_one_object_claimed_by_two_classes_keeps_the_more_confident_class_only():
    a = Detection(0, 3.0, (10.0, 10.0, 40.0, 40.0), confidence=0.9)
    b = Detection(1, 9.0, (12.0, 11.0, 41.0, 40.0), confidence=0.6)  # same object, another class
    c = Detection(0, 2.0, (11.0, 12.0, 39.0, 41.0), confidence=0.4)  # same class: never suppressed here
    far = Detection(1, 1.0, (50.0, 50.0, 60.0, 60.0), confidence=0.3)
    kept = suppress_overlaps([b, a, c, far], iou=0.5)
    assert sorted((d.class_index, d.confidence) for d in kept) == [(0, 0.4), (0, 0.9), (1, 0.3)]
    assert len(suppress_overlaps([a, b], iou=None)) == 2


def test_the_policy_ranks_by_confidence_or_by_peak():
    dets = [Detection(0, 9.0, BOX_A, confidence=0.2), Detection(0, 1.0, BOX_B, confidence=0.8)]
    assert [d.score for d in BoxPolicy().ranking(dets)] == [0.2, 0.8]
    assert [d.score for d in BoxPolicy(scoring="peak").ranking(dets)] == [9.0, 1.0]
    with pytest.raises(ValueError, match="scoring must be one of"):
        BoxPolicy(scoring="area")


def _blob_predictions(images: int = 40, seed: int = 0):
    """Gaussian mountains of random height and spread on 16x16 CAMs, two classes, each over a ground-truth
    box of random size; some mountains lie on no object. Peak and confidence rank these differently."""
    from runtime.evaluation import Predictions

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:16, 0:16]
    cams, boxes = [], []
    for _ in range(images):
        cam, truth = np.full((2, 16, 16), -1.0), []
        for k, (row, col) in enumerate(rng.choice(np.arange(3, 13), size=(rng.integers(1, 4), 2))):
            cls, height, spread = int(rng.integers(2)), rng.uniform(1, 6), rng.uniform(0.6, 2.5)
            cam[cls] = np.maximum(cam[cls], height * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / spread ** 2) - 1)
            if k < 2:  # the third mountain is on nothing
                half = 4 * spread * rng.uniform(0.6, 1.4)
                cx, cy = 4 * col + 2, 4 * row + 2
                truth.append([cls, cx - half, cy - half, cx + half, cy + half])
        cams.append(cam)
        boxes.append(np.array(truth, dtype=np.float64).reshape(-1, 5))
    labels = np.array([[float((b[:, 0] == c).any()) for c in range(2)] for b in boxes])
    return Predictions(np.stack(cams), labels, labels, boxes)


@pytest.mark.parametrize("tune", ["tune_ratio", "tune_box_settings"])
def test_tuning_ranks_the_boxes_as_they_will_be_ranked(tune):
    """With the model's head, the AP tuning maximises is the confidence-ranked AP that evaluate reports
    at each r; without it, the peak-ranked one. Settings tuned for the peak's ranking favour the peak."""
    from dataclasses import replace

    from runtime import evaluation

    predictions, head = _blob_predictions(), _head("spam")
    ratios = (-0.5, -0.25, 0.0, 0.25, 0.5)
    differs = False
    for ranking_head in (head, None):
        if tune == "tune_ratio":
            _, curve = evaluation.tune_ratio(predictions, PARAMS, ratios, head=ranking_head)
        else:
            _, tried = evaluation.tune_box_settings(predictions, PARAMS, projections=("theoretical",),
                                                    relative_floors=(0.0,), ratios=ratios, separate_heights=False,
                                                    head=ranking_head)
            curve = [(row[2], row[4]) for row in tried]
        for ratio, ap in curve:
            at = replace(PARAMS, ratio=ratio)
            expected = evaluation.evaluate(predictions, at, head=ranking_head)["extent_ap_mean"]
            assert ap == pytest.approx(expected)
            differs |= expected != pytest.approx(evaluation.evaluate(predictions, at, head=None)["extent_ap_mean"])
    assert differs  # else this test could not tell the two rankings apart


def test_the_peak_form_is_in_0_1_monotone_in_the_peak_and_calibrated_by_the_instances():
    """kappa_c, beta_c: the least-squares line of an instance's pooled score on its peak over a class's
    boxes; a class without boxes takes the line over all. The peak form is
    sigma(a_c * (kappa_c * peak + beta_c) + b_c): through two boxes the line is exact, so each gets its
    own instance confidence, though both pool below zero (the background's -1 averaged in by GAP), which
    a ratio to the peak could not fit."""
    from runtime.confidence import peak_calibration

    head, cams = _head("gap"), _cams()
    dets = [Detection(0, 3.0, BOX_A), Detection(0, 2.0, BOX_B)]
    own = instance_confidences(cams, dets, head, PARAMS)
    pooled = np.log(own / (1 - own)) / 2.0 + 1.5  # a_c = 2, b_c = -3
    assert (pooled < 0).all() and pooled[0] > pooled[1]
    calibration = peak_calibration([dets], cams[None], head, PARAMS)
    assert calibration.scales[0] == pytest.approx(pooled[0] - pooled[1])  # peaks 3 and 2: the slope
    assert calibration.offsets[0] == pytest.approx(pooled[1] - 2 * (pooled[0] - pooled[1]))
    assert (calibration.scales[1], calibration.offsets[1]) == (calibration.scales[0], calibration.offsets[0])
    peak_head = head.with_peak_form(calibration)
    assert peak_head.form == "peak" and head.form == "instance" and peak_head.instance_form() == head
    assert instance_confidences(cams, dets, peak_head, PARAMS) == pytest.approx(own)
    peaks = np.linspace(0.1, 8.0, 40)
    confidences = instance_confidences(cams, [Detection(0, float(p), BOX_A) for p in peaks], peak_head, PARAMS)
    assert ((confidences >= 0) & (confidences <= 1)).all() and (np.diff(confidences) > 0).all()
    assert peak_calibration([[]], cams[None], head, PARAMS) is None  # nothing to calibrate on
    assert peak_calibration([dets[:1]], cams[None], head, PARAMS) is None  # one box: no line
    falling = [Detection(0, 2.0, BOX_A), Detection(0, 3.0, BOX_B)]  # the bigger instance has the lower peak
    assert peak_calibration([falling], cams[None], head, PARAMS) is None  # would rank against the peak


def test_boxes_whose_confidence_is_one_are_ranked_by_their_evidence():
    """A strong instance's confidence is 1.0 exactly in float64; ranked by the logit, the stronger of
    two such boxes comes first whatever their order, for AP and for one class per object."""
    head = _head("gmp", slope=2.0, intercept=-3.0)
    cams = np.full((2, 16, 16), -1.0)
    cams[0, 2:5, 2:5], cams[1, 3:6, 3:6] = 40.0, 45.0  # logits 77 and 87: sigmoid 1.0 both
    weak, strong = Detection(0, 40.0, BOX_A), Detection(1, 45.0, (9.0, 9.0, 21.0, 21.0))
    for order in ([weak, strong], [strong, weak]):
        scored = with_confidence(order, cams, head, PARAMS)
        assert [d.confidence for d in scored] == [1.0, 1.0]
        ranked = {d.class_index: d.score for d in BoxPolicy().ranking(scored)}
        assert ranked[1] > ranked[0]
        assert [d.class_index for d in suppress_overlaps(scored, iou=0.5)] == [1]


RATIOS = (-0.5, -0.25, 0.0, 0.25, 0.5)


def _tuned(predictions, head, **choices):
    from runtime.evaluation import tune_box_settings

    return tune_box_settings(predictions, PARAMS, projections=("theoretical",), relative_floors=(0.0,), ratios=RATIOS,
                             separate_heights=False, head=head, **choices)[0]


def test_the_confidence_form_is_chosen_on_validation_where_it_localizes_better():
    """The peak form where the peak's ranking, at the box settings tuned for it, gives a strictly
    better extent AP than the instance's at the settings tuned for the instance; then those settings
    with the peak form. Scored in its form, a model that chose the peak form gets exactly the peak's
    extent AP with the peak's own settings (what `eval-cam --score peak --tune` reports)."""
    from runtime.evaluation import evaluate

    head, forms = _head("spam"), set()
    for seed in range(8):
        predictions = _blob_predictions(seed=seed)
        chosen, instance = _tuned(predictions, head), _tuned(predictions, head, confidence_forms=("instance",))
        peak_tuned = _tuned(predictions, None)
        assert instance.confidence_form == "instance"
        by_instance = evaluate(predictions, instance.applied(PARAMS), head=head)["extent_ap_mean"]
        by_peak = evaluate(predictions, peak_tuned.applied(PARAMS), head=None)["extent_ap_mean"]
        if chosen.confidence_form == "peak":
            assert by_peak > by_instance
            assert replace(chosen, confidence_peak_scales=None, confidence_peak_offsets=None) == peak_tuned
            scored = evaluate(predictions, chosen.applied(PARAMS), head=head.for_settings(chosen))["extent_ap_mean"]
            assert scored == by_peak
        else:
            assert by_peak <= by_instance and chosen == instance
        forms.add(chosen.confidence_form)
    assert forms == {"instance", "peak"}  # both happen: else this test could not tell the rule from a constant
    gmp = _head("gmp")  # its instance confidence is a function of its peak already: nothing to choose
    assert all(_tuned(_blob_predictions(seed=s), gmp).confidence_form == "instance" for s in range(3))
    forced = _tuned(_blob_predictions(seed=0), head, confidence_forms=("peak",))
    assert forced.confidence_form == "peak" and len(forced.confidence_peak_offsets) == 2


def test_the_peak_is_compared_at_its_own_settings_not_at_the_instances():
    """On this set the peak's ranking loses at the boxes tuned for the instance form but wins at the
    boxes tuned for it: the model takes the peak form (compared at the instance's settings, it kept
    the instance form, as a letters model did; docs/results.md)."""
    from runtime.evaluation import evaluate

    head, predictions = _head("spam"), _blob_predictions(images=12, seed=111)
    instance, peak_tuned = _tuned(predictions, head, confidence_forms=("instance",)), _tuned(predictions, None)
    by_instance = evaluate(predictions, instance.applied(PARAMS), head=head)["extent_ap_mean"]
    assert evaluate(predictions, instance.applied(PARAMS), head=None)["extent_ap_mean"] < by_instance
    assert evaluate(predictions, peak_tuned.applied(PARAMS), head=None)["extent_ap_mean"] > by_instance
    assert _tuned(predictions, head).confidence_form == "peak"


def test_the_box_census_counts_wrong_class_background_absent_and_missed():
    truth = [np.array([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30]], float), np.zeros((0, 5))]
    found = [[Detection(0, 1.0, (0, 0, 10, 10)),  # right class, right place
              Detection(0, 1.0, (20, 20, 30, 30)),  # on the class-1 object: wrong class
              Detection(1, 1.0, (40, 40, 50, 50))],  # on nothing
             [Detection(1, 1.0, (0, 0, 5, 5))]]  # on an image without objects
    census = box_census(found, truth)
    assert census["boxes"] == 4 and census["objects"] == 2
    assert census["wrong_class_rate"] == pytest.approx(1 / 4) and census["background_rate"] == pytest.approx(2 / 4)
    assert census["missed_rate"] == pytest.approx(1 / 2)  # the class-1 object has no box of its class
    assert census["absent_class_rate"] == pytest.approx(1 / 4)  # the class-1 box where no class-1 object is
    assert census["detections_per_image"] == pytest.approx(2.0)


def test_multi_class_mnist128_is_deterministic_with_labels_that_match_its_boxes():
    from training.data.registry import load_splits

    def draw(seed):
        splits = load_splits("embedded", positive="all", objects=(1, 3), seed=seed, sizes={"train": 40, "val": 8, "test": 40})
        return splits, [splits.test[i] for i in range(40)]

    splits, samples = draw(5)
    again = draw(5)[1]
    other = draw(6)[1]
    assert splits.classes == [str(d) for d in range(10)]
    counts = []
    for sample, twin in zip(samples, again):
        assert np.array_equal(sample.image, twin.image) and np.array_equal(sample.boxes, twin.boxes)
        boxes = sample.boxes
        counts.append(len(boxes))
        assert 1 <= len(boxes) <= 3
        assert set(np.flatnonzero(sample.labels)) == set(boxes[:, 0].astype(int))  # a label per boxed class
        assert ((boxes[:, 3] - boxes[:, 1]) == 28).all() and ((boxes[:, 4] - boxes[:, 2]) == 28).all()  # the patch
        assert (boxes[:, 1:] >= 0).all() and (boxes[:, 1:] <= 128).all()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):  # objects never overlap
                a, b = boxes[i, 1:], boxes[j, 1:]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        ink = sample.image[0]
        for cls, x0, y0, x1, y1 in boxes.astype(int):
            assert ink[y0:y1, x0:x1].max() > 0  # a digit is drawn inside its box
    assert len(set(counts)) > 1  # 1, 2 and 3 objects all occur
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(samples, other))


def test_a_run_that_learned_nothing_is_reported():
    from training.train import at_chance, prior_loss

    labels = np.zeros((1000, 2))
    labels[:100, 0] = 1  # 10 % positives in class 0, 50 % in class 1
    labels[::2, 1] = 1
    entropy = float(np.mean([-(p * np.log(p) + (1 - p) * np.log(1 - p)) for p in (0.1, 0.5)]))
    assert prior_loss(labels) == pytest.approx(entropy)
    record = {"epoch": 3, "val_loss": entropy, "chance_loss": entropy}
    assert at_chance(record)
    assert not at_chance(record | {"val_loss": 0.5 * entropy})  # it learned something
    assert not at_chance(record | {"epoch": 1})  # the first epoch is allowed to start there


def test_the_warning_tells_a_dead_run_from_one_that_does_not_generalise_yet():
    from training.train import _chance_warning

    dead = {"epoch": 3, "val_loss": 0.61, "chance_loss": 0.60, "train_loss": 0.60}
    assert "learned almost nothing" in _chance_warning(dead) and "--input-norm" not in _chance_warning(dead)
    assert "first try --input-norm measured" in _chance_warning(dead, raw_pixels=True)  # the cause found on letters
    frozen = dead | {"score_spread": 7e-7}  # the letters run whose ReLUs had died (docs/method.md)
    assert "same answer" in _chance_warning(frozen) and "will not revive" in _chance_warning(frozen)
    assert "--input-norm measured" in _chance_warning(frozen, raw_pixels=True)
    assert "same answer" not in _chance_warning(dead | {"score_spread": 1e-3})  # untrained, not frozen
    # MobileNetV3 from scratch on shapes, seed 2, epoch 2 (it went on to learn the set): a frozen validation
    # answer while the training loss falls is batch norm's lag, not dead ReLUs.
    lagging = {"epoch": 2, "val_loss": 0.6457, "chance_loss": 0.5988, "train_loss": 0.5318, "score_spread": 5.8e-5}
    assert "not caught up" in _chance_warning(lagging, batch_norm=True)
    assert "will not revive" not in _chance_warning(lagging, batch_norm=True)
    assert "not caught up" in _chance_warning(lagging | {"epoch": 3, "val_loss": 0.8105, "train_loss": 0.4112,
                                                         "score_spread": 0.003}, batch_norm=True)  # its epoch 3
    # A LeNet collapsed on raw letters (table1's schedule, seed 0): training loss 1.006 x the prior's.
    assert "will not revive" in _chance_warning(lagging | {"train_loss": 0.6495, "chance_loss": 0.6453}, batch_norm=True)
    assert "will not revive" not in _chance_warning(lagging)  # no batch norm, yet its training loss falls
    from training.model import ModelConfig, build_model
    from training.train import _has_batch_norm

    assert not _has_batch_norm(build_model(ModelConfig()))  # LeNet
    assert _has_batch_norm(build_model(ModelConfig(backbone="mobilenet_v3_large", in_channels=3, mean=[0.5] * 3,
                                                   std=[0.25] * 3)))
    overfits = dead | {"train_loss": 0.2}  # MobileNetV3 from scratch, epoch 3 on shapes: BN statistics not settled
    assert "does not generalise yet" in _chance_warning(overfits) and "learned almost nothing" not in \
        _chance_warning(overfits)


def test_a_deliberately_collapsed_training_run_says_so(tmp_path, capsys):
    """A learning rate of 1e-9 leaves the model where it started: at the class-prior loss."""
    from training.cli import main as train_cli

    args = ["--dataset", "embedded", "--epochs", "2", "--lr", "1e-9", "--warmup-epochs", "0", "--limit", "train=256",
            "--limit", "val=128", "--out", str(tmp_path / "dead"), "--no-progress"]
    assert train_cli(args) == 0
    out = capsys.readouterr().out
    assert "after 2 epochs the validation loss" in out and "has learned almost nothing" in out
    assert "input not normalised" in out and "--input-norm measured" in out  # LeNet on raw embedded digits
    alive = ["--dataset", "embedded", "--epochs", "2", "--limit", "train=2000", "--limit", "val=128",
             "--out", str(tmp_path / "alive"), "--no-progress"]
    assert train_cli(alive) == 0
    assert "learned almost nothing" not in capsys.readouterr().out


def test_a_resumed_log_keeps_the_columns_it_began_with(tmp_path):
    """A log.csv written before a column existed gets rows that line up with its own header."""
    import csv

    from training.train import _append_csv

    log = tmp_path / "log.csv"
    _append_csv(log, {"epoch": 1, "val_loss": 0.5})
    _append_csv(log, {"epoch": 2, "val_loss": 0.4, "score_spread": 0.3})
    rows = list(csv.reader(log.open()))
    assert rows == [["epoch", "val_loss"], ["1", "0.5"], ["2", "0.4"]]
    fresh = tmp_path / "fresh.csv"
    _append_csv(fresh, {"epoch": 1, "score_spread": 0.3})
    assert list(csv.reader(fresh.open()))[0] == ["epoch", "score_spread"]
