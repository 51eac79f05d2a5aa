"""`build-engine model.onnx`: a TensorRT engine (FP16 / INT8) for NVIDIA GPUs and Jetsons
(engines/tensorrt_engine.py), or an optimized ONNX Runtime model (FP32 / INT8) for CPUs
(engines/onnxruntime_model.py)."""
from __future__ import annotations

import sys
from dataclasses import dataclass

import onnx

from calibration.options import CALIBRATION_GROUP, CalibrationOptions
from runtime.backends import sidecar_path
from runtime.cli import number, run_cli
from runtime.config_cli import command_parser, option, parse_command
from runtime.errors import ConfigError
from runtime.model_info import read_onnx_metadata

from .onnxruntime_model import build_onnxruntime_model
from .tensorrt_engine import build_tensorrt_engine

__all__ = ["BuildCommand", "build_parser", "main"]

EXAMPLES = """examples:
  build-engine model.onnx --fp16                              # TensorRT, writes model.fp16.engine + .json
  build-engine model.int8.onnx --int8                         # TensorRT from a quantize-int8 model
  build-engine model.onnx --int8 --calib ~/frames/ --max-batch 4 --timing-cache trt.cache
  build-engine model.onnx --fp16 --dla-core 0                 # Jetson DLA, GPU fallback
  build-engine model.onnx --backend onnxruntime --int8       # CPU: U8S8 INT8 if it is faster here, else FP32

TensorRT comes with JetPack on a Jetson, or from PyPI elsewhere (`pip install tensorrt-cu12`, or
`tensorrt-cu13` for R580+ drivers). DLA (--dla-core) needs a static shape, so the profile becomes
min = opt = max. The engine only runs on the TensorRT version and GPU it was built with: build it on the target device.
Next to what it writes goes OUTPUT.config.yaml, the options it ran with (build-engine --config reads it).
"""




def _size(value) -> int:
    return number(int, minimum=1)(value)


@dataclass(kw_only=True)
class BuildCommand(CalibrationOptions):
    """build-engine's options."""

    model: str = option(help="ONNX model from export-onnx (or quantize-int8)", positional=True)
    output: str | None = option(None, "default: next to the model (MODEL.PRECISION.engine, or .ort.onnx)",
                                flags=("-o", "--output"))
    backend: str = option("tensorrt", "", choices=["tensorrt", "onnxruntime"])
    fp16: bool = option(False, "TensorRT FP16 (the default for tensorrt)", group="precision (one of)")
    int8: bool = option(False, "INT8 by explicit (Q/DQ) quantization", group="precision (one of)")
    fp32: bool = option(False, "", group="precision (one of)")
    min_batch: int = option(1, "", type=number(int, minimum=1), group="TensorRT profile")
    opt_batch: int = option(1, "", type=number(int, minimum=1), group="TensorRT profile")
    max_batch: int = option(8, "", type=number(int, minimum=1), group="TensorRT profile")
    min_size: list[int] | None = option(None, "smallest input (default: training size)", type=_size, nargs=2,
                                        metavar=("H", "W"), group="TensorRT profile")
    max_size: list[int] | None = option(None, "largest input (default: training size)", type=_size, nargs=2,
                                        metavar=("H", "W"), group="TensorRT profile")
    workspace: int = option(1024, "workspace memory pool limit, MiB", type=number(int, minimum=1), group="TensorRT profile")
    timing_cache: str | None = option(None, "read and update this timing cache file (faster rebuilds)")
    dla_core: int | None = option(None, "build for this DLA core (Jetson), falling back to the GPU",
                                  type=number(int, minimum=0))
    always_int8: bool = option(False, "onnxruntime --int8: keep INT8 even where it measures slower than FP32 or drifts "
                               "past the budget")

    def __post_init__(self) -> None:
        chosen = [name for name in ("fp16", "int8", "fp32") if getattr(self, name)]
        if len(chosen) > 1:
            raise ConfigError(f"--{' and --'.join(chosen)} contradict each other: give one precision")

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp32" if self.fp32 else "fp16"


def build_parser():
    return command_parser(BuildCommand, prog="build-engine", description="Compile an exported spamcam ONNX model for "
                          "a device.", epilog=EXAMPLES, groups=[CALIBRATION_GROUP])


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        if args.backend == "onnxruntime":
            if args.fp16:
                raise ConfigError("ONNX Runtime on a CPU has no FP16 speed-up; use --int8 or the default FP32")
            path = build_onnxruntime_model(args.model, args.output, int8=args.int8, calibration=args.calib,
                                           calib_samples=args.calib_samples, calib_method=args.calib_method,
                                           choose=not args.always_int8)
            chosen = read_onnx_metadata(onnx.load(str(path)), str(path)).extra["cpu_choice"]["chosen"]
            print(f"build-engine: wrote {path} (ONNX Runtime, {chosen.upper()})")
        else:
            path = build_tensorrt_engine(args.model, args.output, precision=args.precision, calibration=args.calib,
                                         calib_samples=args.calib_samples, calib_method=args.calib_method,
                                         batch=(args.min_batch, args.opt_batch, args.max_batch), min_size=args.min_size,
                                         max_size=args.max_size, workspace_mb=args.workspace,
                                         timing_cache=args.timing_cache, dla_core=args.dla_core)
            print(f"build-engine: wrote {path} and {sidecar_path(path).name} (TensorRT {args.precision.upper()})")
        command.save_beside(path)
        return 0

    return run_cli("build-engine", work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
