"""Tracking (runtime/tracking.py): stable IDs, counted against a generator's truth — on the truth boxes
with misses, jitter and false positives, and end to end through edge_app on a video where two digits
enter, cross and leave."""
import json

import numpy as np
import pytest

from edge_app.app import AppConfig, EdgeApp
from media import crossing_digits_video
from runtime.metrics import box_iou
from runtime.postprocess import Detection
from runtime.tracking import IouTracker


def identity_errors(truth: list[dict[int, np.ndarray]], frames: list[list[tuple[np.ndarray, int | None]]]):
    """Per truth object: the IDs it was given, its ID switches (a matched ID other than the previous
    one) and fragmentations (it had an ID, then was detected without one, then got one again). Each
    truth box takes the unused detected box of IoU >= 0.3 that overlaps it most; a frame where it was
    not detected at all is the detector's miss and counts for neither."""
    given, last, switches, fragments, lost = {}, {}, {}, {}, {}
    for gt, tracked in zip(truth, frames):
        used = set()
        for obj, box in gt.items():
            candidates = [(box_iou(b[None], box[None])[0, 0], k) for k, (b, _) in enumerate(tracked) if k not in used]
            iou, k = max(candidates, default=(0.0, None))
            if k is None or iou < 0.3:
                continue
            used.add(k)
            tid = tracked[k][1]
            if tid is None:
                lost[obj] = obj in last
                continue
            given.setdefault(obj, set()).add(tid)
            switches[obj] = switches.get(obj, 0) + (obj in last and last[obj] != tid)
            fragments[obj] = fragments.get(obj, 0) + bool(lost.get(obj))
            lost[obj], last[obj] = False, tid
    return given, switches, fragments


def test_ids_stay_with_their_objects_through_misses_jitter_and_false_positives(mnist_digits, tmp_path):
    truth = crossing_digits_video(tmp_path / "cross.mp4", mnist_digits)
    rng = np.random.default_rng(0)
    tracker = IouTracker()
    frames, confirmed_false = [], 0
    for index, gt in enumerate(truth):
        detections = [Detection(0, 10.0, tuple(box + rng.normal(0, 2, 4)), 0.9)
                      for obj, box in gt.items() if rng.random() > 0.15]  # 15% of sightings missed
        if rng.random() < 0.1:  # a one-frame false positive somewhere else
            x, y = rng.uniform(0, 200, 2)
            detections.append(Detection(0, 5.0, (x, y, x + 40, y + 40), 0.6))
        update = tracker.update(detections, index)
        frames.append([(np.array(d.box), tid) for d, tid in zip(detections, update.track_ids)])
        confirmed_false += sum(1 for t in update.confirmed if t.hits < tracker.min_frames)
    given, switches, fragments = identity_errors(truth, frames)
    assert {obj: len(ids) for obj, ids in given.items()} == {0: 1, 1: 1}  # one ID per object, for its whole life
    assert sum(switches.values()) == 0 and sum(fragments.values()) == 0
    all_ids = {tid for frame in frames for _, tid in frame if tid}
    assert all_ids == set().union(*given.values())  # no false positive ever got an ID
    assert confirmed_false == 0


def test_a_track_ends_after_drop_frames_and_its_id_is_not_reused():
    tracker = IouTracker(min_frames=2, drop_frames=3)
    box = (10.0, 10.0, 50.0, 50.0)
    ids = [tracker.update([Detection(0, 1.0, box, 0.9)], i).track_ids[0] for i in range(3)]
    assert ids == [None, 1, 1]  # confirmed at its second frame
    ended = [tracker.update([], i).ended for i in range(3, 7)]
    assert [len(e) for e in ended] == [0, 0, 0, 1] and ended[-1][0].id == 1
    assert [tracker.update([Detection(0, 1.0, box, 0.9)], i).track_ids[0] for i in (7, 8)] == [None, 2]


def test_classes_are_tracked_apart():
    tracker = IouTracker(min_frames=1)
    box = (10.0, 10.0, 50.0, 50.0)
    first = tracker.update([Detection(0, 1.0, box, 0.9), Detection(1, 1.0, box, 0.8)], 0).track_ids
    second = tracker.update([Detection(1, 1.0, box, 0.8), Detection(0, 1.0, box, 0.9)], 1).track_ids
    assert first == [1, 2] and second == [2, 1]


def test_hungarian_matching_needs_scipy_and_says_so():
    try:
        import scipy  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs scipy"):
            IouTracker(matching="hungarian")
    else:
        assert IouTracker(matching="hungarian").update([], 0).track_ids == []


def test_edge_app_gives_each_crossing_digit_one_id(exported, mnist_digits, tmp_path):
    truth = crossing_digits_video(tmp_path / "cross.mp4", mnist_digits)
    jsonl = tmp_path / "det.jsonl"
    EdgeApp(exported, AppConfig(source=str(tmp_path / "cross.mp4"), json=str(jsonl)), log=lambda m: None).run()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all("track_id" in d for r in records for d in r["detections"])
    frames = [[(np.array(d["box"]), d["track_id"]) for d in r["detections"] if d["class"] == "3"] for r in records]
    given, switches, fragments = identity_errors(truth, frames)
    assert sorted(given) == [0, 1] and all(len(ids) == 1 for ids in given.values()), given
    assert sum(switches.values()) == 0
    assert sum(fragments.values()) == 0
    covered = sum(1 for frame in frames for _, tid in frame if tid)
    assert covered >= 0.6 * sum(len(gt) for gt in truth)  # most sightings carry their ID
