"""`eval-cam`: the command line of training/evaluate.py, for a checkpoint, an ONNX model or a TensorRT
engine, on MNIST128, the embedded digits or an image-level/VOC dataset."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.cli import EXIT_OUTPUT_FAILED, min_max, number, run_cli
from runtime.confidence import SCORINGS
from runtime.errors import NotFoundError
from runtime.output_paths import json_destination, writable_folder, write_json_report

from .data.mnist128 import DEFAULT_GT_BOX, GT_BOXES
from .data.registry import DATASET_HELP
from .evaluate import evaluate_model, format_table, load_for_eval  # noqa: F401 (re-exported: the API used to live here)

__all__ = ["evaluate_model", "load_for_eval", "main"]

EXAMPLES = """examples:
  eval-cam runs/cam/ckpt.pt                         # the dataset it was trained on, test split
  eval-cam runs/cam/ckpt.pt --tune-ratio            # pick r on the validation split, store it in the checkpoint
  eval-cam model.onnx --dataset mnist128 --json results.json
  eval-cam model.int8.onnx --dataset mnist128 --maxboxacc
  eval-cam runs/cam/ckpt.pt --save-vis vis/ --vis-count 24   # heat map, back-projection, boxes
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-cam", description="Evaluate a CAM localizer: classification, pin-pointing "
                                "and extent AP (paper Table 1), optionally MaxBoxAccV2.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ckpt.pt (PyTorch), model.onnx (ONNX Runtime) or model.engine (TensorRT)")
    p.add_argument("--dataset", help=f"{DATASET_HELP}; default: the one the model was trained on")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=number(int, minimum=1), help="evaluate only the first N images of the split")
    p.add_argument("--mnist-dir", help="MNIST IDX folder for --dataset mnist128 (default: the one the model was trained on)")
    p.add_argument("--objects", type=min_max, metavar="MIN,MAX", help="MIN,MAX digits per MNIST128 canvas (default: training's, else 1,1)")
    p.add_argument("--mnist-box", default=DEFAULT_GT_BOX, choices=GT_BOXES,
                   help="MNIST128 ground truth: the pasted 28x28 patch (default) or the digit's tight ink box")
    p.add_argument("--seed", type=number(int, minimum=0), help="dataset seed (default: training's on its dataset, else 0; another seed "
                   "draws other MNIST128 splits)")
    p.add_argument("--tune-ratio", action="store_true", help="choose r on the validation split and store it in the model")
    p.add_argument("--ratio", type=number(float, above=0), help="evaluate with this r instead of the stored one")
    p.add_argument("--tolerance", type=number(float, minimum=0), default=0.0, help="pin-pointing tolerance in pixels (18 for VOC)")
    p.add_argument("--method", default="fast", choices=["fast", "reference"], help="post-processing implementation")
    p.add_argument("--score", default="confidence", choices=SCORINGS,
                   help="rank boxes by their confidence, P(present) of the instance (default), or by the raw CAM peak "
                   "(the paper's, for Table 1)")
    p.add_argument("--conf", type=number(float, minimum=0), metavar="C",
                   help="keep only boxes of confidence >= C (default: all; edge_app keeps >= 0.5)")
    p.add_argument("--overlap-iou", type=number(float, above=0), metavar="IOU",
                   help="of boxes of different classes overlapping by IoU >= IOU, keep the most confident")
    p.add_argument("--maxboxacc", action="store_true", help="also compute MaxBoxAccV2 (Choe et al. 2020)")
    p.add_argument("--json", help="write all metrics to this JSON file (- : standard output, the table then goes to stderr)")
    p.add_argument("--save-vis", metavar="DIR", help="write pictures: CAM heat map, back-projected area, boxes "
                   "(green = matches ground truth, red = not)")
    p.add_argument("--vis-count", type=number(int, minimum=1), default=16, help="pictures --save-vis writes")
    p.add_argument("--batch-size", type=number(int, minimum=1), default=32)
    p.add_argument("--device", default="auto", help="for checkpoints: auto, cpu, cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        if not Path(args.model).is_file():  # before the outputs are checked: they must not be made for nothing
            raise NotFoundError(f"{args.model}: no such model file")
        json_target = json_destination(args.json)  # checked before the evaluation, not after
        say = sys.stderr if json_target == "-" else sys.stdout  # --json -: standard output holds the JSON alone
        if args.save_vis:
            writable_folder(args.save_vis, "--save-vis")
        result = evaluate_model(args.model, dataset=args.dataset, split=args.split, limit=args.limit,
                                tune=args.tune_ratio, ratio=args.ratio, tolerance=args.tolerance, method=args.method,
                                maxboxacc=args.maxboxacc, mnist_dir=args.mnist_dir, seed=args.seed, objects=args.objects,
                                save_vis=args.save_vis, vis_count=args.vis_count, batch_size=args.batch_size,
                                device=args.device, mnist_box=args.mnist_box, progress=not args.no_progress,
                                scoring=args.score, min_confidence=args.conf, overlap_iou=args.overlap_iou)
        print(format_table(result), file=say)
        if args.tune_ratio:
            print(f"eval-cam: r = {result['ratio']:g} chosen on the validation split and stored in {args.model}", file=say)
        if json_target:
            print(f"eval-cam: metrics written to {write_json_report(json_target, result)}", file=say)
        if args.save_vis:
            print(f"eval-cam: {result['pictures_written']} pictures written to {args.save_vis}", file=say)
            if result["pictures_error"]:
                print(f"eval-cam: error: the pictures stopped there: {result['pictures_error']}", file=sys.stderr)
                return EXIT_OUTPUT_FAILED
        return 0

    return run_cli("eval-cam", work, interrupted="nothing was written (the model's stored r is unchanged)")


if __name__ == "__main__":
    sys.exit(main())
