"""`quantize-int8`: FP32 ONNX -> INT8 Q/DQ ONNX for ONNX Runtime (CPU) and TensorRT (GPU)."""
from __future__ import annotations

import argparse
import sys

from runtime.model_info import MetadataError

from .quantize import CALIBRATION_METHODS, INT8_TARGETS, CalibrationError, quantize_int8

EXAMPLES = """examples:
  quantize-int8 model.onnx                                  # model.int8.onnx, calibrated on the training data
  quantize-int8 model.onnx --calib mnist128                 # ... or on a named dataset
  quantize-int8 model.onnx --target cpu                     # U8S8: fastest on ONNX Runtime's CPU kernels
  quantize-int8 model.onnx --calib ~/frames/ --samples 500 --method entropy -o model.int8.onnx
  eval-cam model.int8.onnx --dataset mnist128               # check the accuracy it keeps
  compare-backends ckpt.pt model.onnx model.int8.onnx       # what INT8 costs, layer by layer
  quantize-int8 model.onnx --exclude-worst 1                # keep the layer with the largest error in float
  quantize-int8 model.onnx --exclude node_conv2d            # keep named layers in float

The calibration images go through the runtime's own pre-processing. By default (--target tensorrt)
activations and weights are symmetric INT8 (zero point 0), weights per output channel: what TensorRT's
explicit quantization needs; --target cpu writes unsigned activations instead, which TensorRT cannot build.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantize-int8", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="FP32 ONNX model written by export-onnx")
    parser.add_argument("--calib", help="folder of images, or a dataset spec: mnist128, embedded, voc:PATH, folder:PATH, "
                        "csv:PATH (default: the dataset the model was trained on, as export-onnx recorded it)")
    parser.add_argument("-o", "--output", help="default: MODEL.int8.onnx")
    parser.add_argument("--samples", type=int, default=256, help="calibration images (default: 256)")
    parser.add_argument("--method", default="minmax", choices=CALIBRATION_METHODS)
    parser.add_argument("--mnist-dir", help="MNIST IDX folder for --calib mnist128")
    parser.add_argument("--target", default="tensorrt", choices=INT8_TARGETS,
                        help="tensorrt: signed symmetric Q/DQ, for TensorRT and ONNX Runtime alike (default); "
                             "cpu: U8S8, fastest on ONNX Runtime's CPU kernels, not buildable by TensorRT")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NODE",
                        help="keep these nodes in float (names as compare-backends lists them)")
    parser.add_argument("--exclude-worst", type=int, default=0, metavar="K",
                        help="measure each layer's INT8 error and keep the K worst layers in float")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = quantize_int8(args.model, args.output, calibration=args.calib, samples=args.samples, method=args.method,
                             mnist_dir=args.mnist_dir, show_progress=not args.no_progress, exclude=args.exclude,
                             exclude_worst=args.exclude_worst, target=args.target)
    except (CalibrationError, MetadataError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"quantize-int8: error: {error}", file=sys.stderr)
        return 2
    form = "symmetric S8S8" if args.target == "tensorrt" else "U8S8 for CPUs"
    print(f"quantize-int8: wrote {path} (INT8 Q/DQ, {form}, per-channel weights; {args.method} calibration)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
