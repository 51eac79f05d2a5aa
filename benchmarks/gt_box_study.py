"""How much the MNIST128 ground-truth box decides extent AP: the table1 checkpoints scored against
the pasted 28x28 patch (the decided definition, docs/method.md) and against the digit's tight ink
box (the stricter yardstick). r is tuned on the validation split for each definition; nothing is
retrained (the labels are the same, only the boxes differ).

    python benchmarks/gt_box_study.py [--runs runs/table1]
"""
from __future__ import annotations

import argparse

from _runs import checkpoints, predict_val_test, splits_for, tuned_on_val, with_boxes_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--val", type=int, default=3000, help="validation canvases to tune r on (table1: 3000)")
    args = parser.parse_args()
    from training.predict import localizer_params

    print("| run | ground truth | r (tuned on val) | extent AP (test) | extent AP 11-pt |")
    print("| --- | --- | --- | --- | --- |")
    for name, model, config in checkpoints(args.runs):
        val, test = predict_val_test(model, splits_for(config, val=args.val))  # patch boxes
        ink = splits_for(config, val=args.val, mnist_box="ink")
        scored = {"patch": (val, test), "ink": (with_boxes_of(val, ink.val), with_boxes_of(test, ink.test))}
        for box, (box_val, box_test) in scored.items():
            ratio, result = tuned_on_val(box_val, box_test, localizer_params(model))
            print(f"| {name} | {box} | {ratio:g} | {100 * result['extent_ap_mean']:.1f} | "
                  f"{100 * result['extent_ap_11pt_mean']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
