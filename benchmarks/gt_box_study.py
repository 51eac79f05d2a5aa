"""How much the MNIST128 ground-truth box decides extent AP: the table1 checkpoints scored against
the digit's tight ink box (PAPER-NOTES' definition, what docs/results.md's main table uses) and
against the pasted 28x28 patch (what a generator of "28x28 digits placed on a 128x128 canvas" would
naturally call the object). r is tuned on the validation split for each definition; nothing is
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
        val, test = predict_val_test(model, splits_for(config, val=args.val))  # ink boxes
        patch = splits_for(config, val=args.val, mnist_box="patch")
        scored = {"ink": (val, test), "patch": (with_boxes_of(val, patch.val), with_boxes_of(test, patch.test))}
        for box, (box_val, box_test) in scored.items():
            ratio, result = tuned_on_val(box_val, box_test, localizer_params(model))
            print(f"| {name} | {box} | {ratio:g} | {100 * result['extent_ap_mean']:.1f} | "
                  f"{100 * result['extent_ap_11pt_mean']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
