"""Where extent AP is lost: for each table1 checkpoint, how many 3s get a box of IoU >= 0.5, how far
the best box's width and height are from the truth, how many boxes a positive canvas gets, and how
many boxes land on negative canvases. Measured on the validation split the checkpoint's r was tuned
on, with that r (docs/results.md quotes these tables).

    python benchmarks/box_errors.py [--runs runs/table1] [--images 3000]
"""
from __future__ import annotations

import argparse
import numpy as np

from _runs import checkpoints, splits_for
from runtime.metrics import box_iou
from runtime.postprocess import localize_batch


def box_errors(cams: np.ndarray, labels: np.ndarray, truth: list, params) -> dict:
    """The statistics of one model's boxes on one split (single-class data)."""
    detections = localize_batch(cams, params)
    hits, counts, width_errors, height_errors, negative_boxes = [], [], [], [], 0
    for found, label, gt in zip(detections, labels[:, 0], truth):
        boxes = np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4)
        if not label:
            negative_boxes += len(boxes)
            continue
        counts.append(len(boxes))
        if not len(boxes):
            hits.append(0.0)
            continue
        target = np.asarray(gt, dtype=np.float64)[:, 1:5]
        overlaps = box_iou(boxes, target).max(axis=1)
        best = boxes[overlaps.argmax()]
        hits.append(overlaps.max())
        width_errors.append((best[2] - best[0]) - (target[0, 2] - target[0, 0]))
        height_errors.append((best[3] - best[1]) - (target[0, 3] - target[0, 1]))
    return {
        "positives": len(hits), "negatives": int((labels[:, 0] == 0).sum()),
        "hit_rate": float(np.mean(np.asarray(hits) >= 0.5)),
        "width_error": (float(np.mean(width_errors)), float(np.std(width_errors))),
        "height_error": (float(np.mean(height_errors)), float(np.std(height_errors))),
        "positives_with_several_boxes": int(np.sum(np.asarray(counts) > 1)),
        "boxes_on_negatives": negative_boxes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--images", type=int, default=3000, help="validation canvases (table1 tunes r on 3000)")
    args = parser.parse_args()
    from training.predict import localizer_params, predict

    print("| run | positives with IoU >= 0.5 | width error (mean ± sd) | height error | positives with > 1 box "
          "| boxes on negatives |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, model, config in checkpoints(args.runs, multi=False):
        predictions, _ = predict(model, splits_for(config, val=args.images).val)
        stats = box_errors(predictions.cams, predictions.labels, predictions.boxes, localizer_params(model))
        (wm, ws), (hm, hs) = stats["width_error"], stats["height_error"]
        print(f"| {name} | {100 * stats['hit_rate']:.1f} % of {stats['positives']} | {wm:+.1f} ± {ws:.1f} px | "
              f"{hm:+.1f} ± {hs:.1f} px | {stats['positives_with_several_boxes']} | {stats['boxes_on_negatives']} "
              f"on {stats['negatives']} |", flush=True)


if __name__ == "__main__":
    main()
