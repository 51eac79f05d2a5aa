"""What choosing the box settings (projection, relative floor, r) does on the paper's benchmark: the
table1 checkpoints (LeNet, two-class MNIST128) scored against the 28x28 patch and the ink box, with the
paper's boxes (theoretical field, floor 0, r tuned), with the projection, floor and one r tuned, and
with everything tuned on the validation split as train-cam now does, heights' own r included
(runtime.evaluation.tune_box_settings). Nothing is retrained; boxes are ranked
by confidence. Prints mean ± sd over the seeds found.

    python benchmarks/box_settings_study.py [--runs runs/table1] [--poolings gmp,spam] [--val 1000]
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from _help import comma_subset
from _runs import checkpoints, predict_val_test, splits_for, with_boxes_of

VARIANTS = {"paper": {"projections": ("theoretical",), "relative_floors": (0.0,), "separate_heights": False},
            "one r": {"separate_heights": False}, "chosen": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--poolings", default="gmp,spam", type=comma_subset(("gmp", "gap", "spam")))
    parser.add_argument("--val", type=int, default=1000, help="validation canvases to tune on")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from runtime.confidence import BoxPolicy
    from runtime.evaluation import RatioTuningError, evaluate, tune_box_settings
    from runtime.postprocess import BoxSettings
    from training.predict import classifier_head, localizer_params

    poolings = args.poolings
    scores: dict = defaultdict(list)
    print("| run | ground truth | boxes | settings (projection, floor, r) | extent AP (test) |")
    print("| --- | --- | --- | --- | --- |")
    for name, model, config in checkpoints(args.runs, multi=False):
        if model.config.pooling not in poolings:
            continue
        splits = splits_for(config, val=args.val)
        val, test = predict_val_test(model, splits)
        ink = splits_for(config, val=args.val, mnist_box="ink")
        params, head = localizer_params(model), classifier_head(model)
        for box, (box_val, box_test) in {"patch": (val, test),
                                         "ink": (with_boxes_of(val, ink.val), with_boxes_of(test, ink.test))}.items():
            for variant, choices in VARIANTS.items():
                try:
                    settings, _ = tune_box_settings(box_val, params, **choices)
                except RatioTuningError:
                    settings = BoxSettings()
                ap = evaluate(box_test, settings.applied(params), head=head, policy=BoxPolicy())["extent_ap_mean"]
                scores[(model.config.pooling, box, variant)].append(ap)
                ratios = f"{settings.ratio:g}" + ("" if settings.ratio_y is None else f" x {settings.ratio_y:g}")
                print(f"| {name} | {box} | {variant} | {settings.projection}, {settings.relative_floor:g}, "
                      f"{ratios} | {100 * ap:.1f} |", flush=True)
    print("\n| pooling | ground truth | paper's boxes | chosen, one r | chosen |\n| --- | --- | --- | --- | --- |")
    for pooling in poolings:
        for box in ("patch", "ink"):
            cells = [scores[(pooling, box, v)] for v in VARIANTS]
            if all(cells):
                print(f"| {pooling.upper()} | {box} | " + " | ".join(
                    f"{100 * np.mean(c):.1f} ± {100 * np.std(c, ddof=1) if len(c) > 1 else 0:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
