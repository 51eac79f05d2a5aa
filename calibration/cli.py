"""`quantize-int8`: FP32 ONNX -> INT8 Q/DQ ONNX for ONNX Runtime (CPU) and TensorRT (GPU)."""
from __future__ import annotations

import argparse
import sys

from runtime.cli import number, run_cli

from .options import add_calibration_arguments
from .quantize import INT8_TARGETS, quantize_int8

EXAMPLES = """examples:
  quantize-int8 model.onnx                                  # model.int8.onnx, calibrated on the training data
  quantize-int8 model.onnx --calib mnist128                 # ... or on a named dataset
  quantize-int8 model.onnx --target cpu                     # U8S8: fastest on ONNX Runtime's CPU kernels
  quantize-int8 model.onnx --calib ~/frames/ --calib-samples 500 --calib-method entropy -o model.int8.onnx
  eval-cam model.int8.onnx --dataset mnist128               # check the accuracy it keeps
  compare-backends ckpt.pt model.onnx model.int8.onnx       # what INT8 costs, layer by layer
  quantize-int8 model.onnx --exclude-worst 1                # keep the layer with the largest error in float
  quantize-int8 model.onnx --exclude node_conv2d            # keep named layers in float

The calibration images go through the runtime's own pre-processing. By default (--target tensorrt)
activations and weights are symmetric INT8 (zero point 0), weights per output channel: what TensorRT's
explicit quantization needs; --target cpu writes unsigned activations instead, which TensorRT cannot build.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantize-int8", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="FP32 ONNX model written by export-onnx")
    parser.add_argument("-o", "--output", help="default: MODEL.int8.onnx")
    parser.add_argument("--target", default="tensorrt", choices=INT8_TARGETS,
                        help="tensorrt: signed symmetric Q/DQ, for TensorRT and ONNX Runtime alike (default); "
                             "cpu: U8S8, fastest on ONNX Runtime's CPU kernels, not buildable by TensorRT")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE",
                        help="keep these nodes in float (names as compare-backends lists them)")
    parser.add_argument("--exclude-worst", type=number(int, minimum=0), default=0, metavar="K",
                        help="measure each layer's INT8 error and keep the K worst layers in float")
    parser.add_argument("--no-progress", action="store_true")
    add_calibration_arguments(parser, old_names=True)
    parser.add_argument("--mnist-dir", help="MNIST IDX folder for --calib mnist128 (default: the one trained on)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        path = quantize_int8(args.model, args.output, calibration=args.calib, samples=args.calib_samples,
                             method=args.calib_method, mnist_dir=args.mnist_dir, show_progress=not args.no_progress,
                             exclude=args.exclude, exclude_worst=args.exclude_worst, target=args.target)
        form = "symmetric S8S8" if args.target == "tensorrt" else "U8S8 for CPUs"
        print(f"quantize-int8: wrote {path} (INT8 Q/DQ, {form}, per-channel weights; {args.calib_method} calibration)")
        return 0

    return run_cli("quantize-int8", work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
