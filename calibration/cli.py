"""`quantize-int8`: FP32 ONNX -> INT8 Q/DQ ONNX for ONNX Runtime (CPU) and TensorRT (GPU)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from runtime.cli import number, run_cli
from runtime.config_cli import command_parser, option, parse_command

from .options import CALIBRATION_GROUP, CalibrationOptions
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
Next to the model it writes OUTPUT.config.yaml, the options it ran with (for --config).
"""


@dataclass(kw_only=True)
class QuantizeCommand(CalibrationOptions):
    """quantize-int8's options."""

    model: str = option(help="FP32 ONNX model written by export-onnx", positional=True)
    output: str | None = option(None, "default: MODEL.int8.onnx", flags=("-o", "--output"))
    target: str = option("tensorrt", "tensorrt: signed symmetric Q/DQ, for TensorRT and ONNX Runtime alike; cpu: U8S8, "
                         "fastest on ONNX Runtime's CPU kernels, not buildable by TensorRT", choices=INT8_TARGETS)
    exclude: list[str] = option(help="keep these nodes in float (names as compare-backends lists them)", factory=list,
                                nargs="+", metavar="NODE")
    exclude_worst: int = option(0, "measure each layer's INT8 error and keep the K worst layers in float",
                                type=number(int, minimum=0), metavar="K")
    mnist_dir: str | None = option(None, "MNIST IDX folder for --calib mnist128 (default: the one trained on)")
    progress: bool = option(True, "no progress bar", switch="--no-progress")


def build_parser():
    return command_parser(QuantizeCommand, prog="quantize-int8", description=__doc__, epilog=EXAMPLES,
                          groups=[CALIBRATION_GROUP])


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        path = quantize_int8(args.model, args.output, calibration=args.calib, samples=args.calib_samples,
                             method=args.calib_method, mnist_dir=args.mnist_dir, show_progress=args.progress,
                             exclude=args.exclude, exclude_worst=args.exclude_worst, target=args.target)
        form = "symmetric S8S8" if args.target == "tensorrt" else "U8S8 for CPUs"
        print(f"quantize-int8: wrote {path} (INT8 Q/DQ, {form}, per-channel weights; {args.calib_method} calibration)")
        command.save_beside(path)
        return 0

    return run_cli("quantize-int8", work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
