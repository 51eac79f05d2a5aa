"""What deployed gating keeps, per confidence form: deep_backbones' checkpoints re-scored as edge_app keeps boxes.

For every model benchmarks/deep_backbones.py scored (its deep_backbones.json in --runs), the test
split's boxes are made with the settings that model chose ("chosen") and kept as deployed
(confidence >= 0.5, one class per object, runtime/confidence.py), with the confidence in each form:
- instance: the instance form, whatever the model chose;
- peak, gated by its confidence: the peak form, a box kept where its confidence reaches 0.5 (how the
  peak form was gated until 2026-12-07);
- peak, gated by the image too: the same, and its class's image-level P(present) must reach 0.5 too
  (BoxPolicy, as deployed now).
The peak form is calibrated on validation at the chosen boxes as the chooser calibrates it today (a
checkpoint that stored an older calibration is measured with today's). The same boxes every time:
only their confidence, and so what is kept and how it is ranked, differs.
Reports extent AP of the kept boxes and the census: boxes per image, wrong-class boxes, boxes of a
class the image does not have, missed objects. Why: the peak form ranks better on deep backbones but
a peak can be high on a class the model calls absent (docs/method.md, "Gating asks the image too").

    python benchmarks/deployed_gating.py [--runs runs/deep_backbones] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from _help import Formatter

GATE = 0.5  # deployed: runtime.confidence.DEFAULT_MIN_CONFIDENCE and DEFAULT_OVERLAP_IOU
FORMS = ("instance", "peak, gated by its confidence", "peak, gated by the image too")
COLUMNS = ("extent_ap_mean", "detections_per_image", "wrong_class_rate", "absent_class_rate", "missed_rate")
HEADINGS = ("extent AP, deployed", "boxes / image", "wrong-class boxes %", "boxes of an absent class %",
            "missed objects %")


def score(checkpoint: str, seed: int, settings: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from deep_backbones import OBJECTS
    from runtime.confidence import (DEFAULT_MIN_CONFIDENCE, DEFAULT_OVERLAP_IOU, BoxPolicy, gate, peak_calibration,
                                    suppress_overlaps, with_confidence)
    from runtime.evaluation import box_census
    from runtime.metrics import extent_ap
    from runtime.postprocess import BoxSettings, localize_batch
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import classifier_head, localizer_params, predict
    from training.train import flush_denormals

    assert (DEFAULT_MIN_CONFIDENCE, DEFAULT_OVERLAP_IOU) == (GATE, GATE)
    model, _ = load_model(checkpoint)
    splits = load_splits("shapes", objects=OBJECTS, seed=seed, input_size=model.config.input_size)
    with flush_denormals():
        val, test = predict(model, splits.val)[0], predict(model, splits.test)[0]
    chosen = BoxSettings.from_fields(settings)
    params = chosen.applied(localizer_params(model))
    head = classifier_head(model).for_settings(chosen)
    # the peak form calibrated on validation at these boxes, as the chooser calibrates it (a model stored
    # with an older calibration is measured with today's)
    calibration = peak_calibration(localize_batch(val.cams, params), val.cams, head, params)
    instance_head = head.instance_form()
    policy = BoxPolicy(min_confidence=GATE, overlap_iou=GATE)
    boxes = localize_batch(test.cams, params)
    kept = {"instance": [policy.apply(f, c, instance_head, params) for f, c in zip(boxes, test.cams)]}
    if calibration is not None:  # None: no validation boxes to fit the peak form on (a model localizing nothing)
        peak_head = head.with_peak_form(calibration)

        def confidence_only(found, cam):  # the gate before it asked the image
            return suppress_overlaps(gate(with_confidence(found, cam, peak_head, params), GATE), GATE)

        kept["peak, gated by its confidence"] = [confidence_only(f, c) for f, c in zip(boxes, test.cams)]
        kept["peak, gated by the image too"] = [policy.apply(f, c, peak_head, params) for f, c in zip(boxes, test.cams)]
    result = {"backbone": model.config.backbone, "seed": seed, "chosen_form": chosen.confidence_form}
    for form, found in kept.items():
        ap = extent_ap([policy.ranking(f) for f in found], test.boxes, test.scores.shape[1])
        result[form] = {"extent_ap_mean": float(np.nanmean(ap)), **box_census(found, test.boxes)}
    return result


def table(results: list[dict]) -> str:
    lines = ["| model (seed, form chosen) | confidence | " + " | ".join(HEADINGS) + " |", "|" + " --- |" * (2 + len(COLUMNS))]
    for r in sorted(results, key=lambda r: (r["backbone"], r["seed"])):
        for form in (f for f in FORMS if f in r):
            cells = [f"{r[form][c]:.2f}" if c == "detections_per_image" else f"{100 * r[form][c]:.1f}" for c in COLUMNS]
            lines.append(f"| {r['backbone']} ({r['seed']}, {r['chosen_form']}) | {form} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--runs", default="runs/deep_backbones", help="the folder benchmarks/deep_backbones.py wrote")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)), help="models scored at once")
    args = parser.parse_args()
    summary_path = Path(args.runs) / "deep_backbones.json"
    if not summary_path.is_file():
        raise SystemExit(f"deployed_gating: {summary_path} not found; run benchmarks/deep_backbones.py --runs "
                         f"{args.runs} first")
    started = time.time()
    os.environ["OMP_NUM_THREADS"] = "1"
    models = json.loads(summary_path.read_text())["results"]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(score, [m["checkpoint"] for m in models], [m["seed"] for m in models],
                                [m["chosen"]["settings"] for m in models]))
    text = table(results)
    (Path(args.runs) / "deployed_gating.json").write_text(json.dumps({"results": results, "table": text}, indent=2))
    print(f"Deployed (confidence >= {GATE}, one class per object), the test split\n{text}\n"
          f"deployed_gating: {(time.time() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
