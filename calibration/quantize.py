"""Explicit INT8 quantization: a Q/DQ ONNX model from onnxruntime.quantization, made the way TensorRT
requires explicit quantization, so one file serves ONNX Runtime on a CPU and TensorRT on a GPU
(TensorRT deprecated its implicit calibrators in 10.1, and 11 removed them, in favour of Q/DQ).

TensorRT's rules, enforced here and checked by `check_tensorrt_rules`:
- INT8 (signed) for activations and weights, symmetric: every zero point is 0;
- weights per output channel (axis 0 of a Conv weight);
- biases stay float (TensorRT fuses them; it has no INT32 dequantization).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from runtime.model_info import load_onnx, read_onnx_metadata, write_onnx_metadata

from .dataset import CalibrationError, calibration_images
from runtime.errors import BuildError, ConfigError, ModelError
from runtime.output_paths import replace_atomically, writable_file

__all__ = ["CALIBRATION_METHODS", "DEFAULT_CALIB_METHOD", "DEFAULT_CALIB_SAMPLES", "INT8_TARGETS", "CalibrationError", "quantize_int8", "check_tensorrt_rules"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIB_METHOD = "minmax"  # the observed ranges, no histogram: nothing to tune, and fast
DEFAULT_CALIB_SAMPLES = 256  # enough for stable ranges; more mostly costs time
INT8_TARGETS = ("tensorrt", "cpu")
INT8_FORMATS = {"tensorrt": "S8S8 symmetric Q/DQ (TensorRT explicit quantization)",
                "cpu": "U8S8 Q/DQ (ONNX Runtime CPU kernels)"}


def _reader(images: list[np.ndarray], input_name: str, batch_size: int, progress: Callable | None):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.position = 0

        def get_next(self):
            if self.position >= len(images):
                return None
            batch = np.stack(images[self.position : self.position + batch_size]).astype(np.float32)
            self.position += len(batch)
            if progress is not None:
                progress(len(batch))
            return {input_name: batch}

        def rewind(self) -> None:
            self.position = 0

    return _Reader()


def quantize_int8(model_path: str | Path, output: str | Path | None = None, *, calibration: str | Path | None = None,
                  samples: int = DEFAULT_CALIB_SAMPLES, method: str = DEFAULT_CALIB_METHOD, batch_size: int = 16, mnist_dir: str | None = None,
                  show_progress: bool = True, exclude: Sequence[str] = (), exclude_worst: int = 0,
                  target: str = "tensorrt") -> Path:
    """FP32 ONNX (from export-onnx) -> INT8 Q/DQ ONNX with the same metadata (precision recorded).

    `calibration` defaults to the dataset the model was trained on (recorded by export-onnx): INT8
    ranges fitted to other images clip the activations the model will really see. `exclude` keeps the
    named nodes in float; `exclude_worst` K quantizes once, measures each layer's own error
    (calibration/layer_error.py) and keeps the K worst layers in float as well.

    `target` picks the INT8 format. "tensorrt" (the default, and the one file for GPUs and CPUs):
    signed symmetric activations, as TensorRT's explicit quantization requires. "cpu": unsigned
    asymmetric activations with signed weights (U8S8), the form ONNX Runtime's x86 and ARM kernels
    fuse into integer convolutions; TensorRT cannot build it. Measured here: spamcam's TensorRT-form
    MobileNetV3 ran at 0.33x FP32 on a CPU, ONNX Runtime's U8S8 at 0.83x (docs/benchmarks.md)."""
    if target not in INT8_TARGETS:
        raise ConfigError(f"INT8 target must be one of {INT8_TARGETS}, got {target!r}")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    model_path = Path(model_path)
    fp32 = _load_checked(model_path)
    output = writable_file(output or model_path.with_name(model_path.stem + ".int8.onnx"), "-o")  # before calibrating
    info = read_onnx_metadata(fp32, str(model_path))
    if info.extra.get("precision") == "int8":
        raise ModelError(f"{model_path} is already INT8-quantized; quantize the FP32 export instead")
    if calibration is None:
        calibration = info.trained_on["dataset"]
        mnist_dir = mnist_dir or info.trained_on["mnist_dir"]
        if not calibration:
            raise CalibrationError(f"{model_path} does not record the dataset it was trained on; give --calib: a "
                                   "folder of frames like those it will see, or a dataset spec (mnist128, voc:PATH, ...: see --help)")
        origin = "the dataset the model was trained on"
    else:
        origin = "--calib"
    images = calibration_images(calibration, info, samples, mnist_dir)
    print(f"quantize-int8: calibrating on {len(images)} images from {calibration} ({origin}"
          f"{'; its training split' if not Path(str(calibration)).expanduser().is_dir() else ''})", flush=True)

    if exclude_worst < 0:
        raise ConfigError(f"--exclude-worst takes a number of layers >= 0, got {exclude_worst}")
    input_name = fp32.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        except Exception as error:  # pre-processing is an optimisation; quantization works without it
            print(f"quantize-int8: graph pre-processing skipped ({type(error).__name__}: {error})")
            shutil.copy(model_path, prepared)
        excluded = _checked_exclusions(onnx.load(str(prepared)), exclude)
        if exclude_worst:
            trial = Path(tmp) / "trial.onnx"
            _quantize(prepared, trial, images, input_name, method, batch_size, excluded, show_progress, target)
            from .layer_error import layer_errors, worst_layers

            layers = [l for l in layer_errors(model_path, trial, np.stack(images[:32])) if l.node not in excluded]
            worst = worst_layers(layers, exclude_worst)
            lost = {l.node: l.lost_db for l in layers}
            print("quantize-int8: keeping in float the layers that lose the most SQNR: "
                  + ", ".join(f"{name} ({lost[name]:.1f} dB)" for name in worst), flush=True)
            excluded += worst
        raw = Path(tmp) / "quantized.onnx"  # the output appears only once it is complete and checked
        _quantize(prepared, raw, images, input_name, method, batch_size, excluded, show_progress, target)
        quantized = onnx.load(str(raw))
    info.extra.update({"precision": "int8", "int8_format": INT8_FORMATS[target],
                       "calibration": {"method": method, "samples": len(images), "source": str(calibration),
                                       "float_nodes": excluded}})
    write_onnx_metadata(quantized, info)
    problems = check_tensorrt_rules(quantized) if target == "tensorrt" else []
    if problems:
        raise BuildError("the quantized graph breaks TensorRT's explicit-quantization rules: " + "; ".join(problems[:5]))
    return replace_atomically(output, lambda temporary: onnx.save(quantized, str(temporary)))


def _load_checked(model_path: Path) -> onnx.ModelProto:
    """The ONNX model, its metadata checked against its graph first (runtime.backends.check_graph)."""
    from runtime.backends import open_backend

    model = load_onnx(model_path)  # a clear error for empty, truncated and graph-less files
    open_backend(model_path, providers=["CPUExecutionProvider"]).close()
    return model


QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _checked_exclusions(prepared: onnx.ModelProto, exclude: Sequence[str]) -> list[str]:
    """The nodes to keep float, each checked to exist in the graph that is quantized."""
    layers = [n.name for n in prepared.graph.node if n.op_type in QUANTIZABLE_OPS]
    unknown = [name for name in exclude if name not in {n.name for n in prepared.graph.node}]
    if unknown:
        raise ConfigError(f"--exclude: no node named {', '.join(unknown)} in the model; its quantizable layers are "
                         f"{', '.join(layers)} (compare-backends lists each one's error)")
    return list(dict.fromkeys(exclude))


def even_batch(count: int, batch_size: int) -> int:
    """The largest batch size up to `batch_size` that splits `count` images into equal batches: ONNX
    Runtime's entropy and percentile calibrators stack the batches' outputs and fail with a cryptic
    numpy error when the last batch is smaller (20 images in batches of 16)."""
    return max(b for b in range(1, max(1, min(batch_size, count)) + 1) if count % b == 0)


def _quantize(prepared: Path, output: Path, images: list[np.ndarray], input_name: str, method: str, batch_size: int,
              excluded: list[str], show_progress: bool, target: str = "tensorrt") -> None:
    """One run of ONNX Runtime's static Q/DQ quantization, in the target's INT8 format."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from tqdm import tqdm

    bar = tqdm(total=len(images), desc=f"calibrating ({method})", disable=not show_progress, leave=False)
    batch_size = even_batch(len(images), batch_size)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    if target == "tensorrt":
        activations = QuantType.QInt8
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                 "CalibTensorRangeSymmetric": True}
    else:  # ONNX Runtime's CPU recommendation: U8S8, per-channel weights, int32 biases
        activations, extra = QuantType.QUInt8, {"WeightSymmetric": True}
    # ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI (AVX2, plain AVX-512) add u8 x s8 products in
    # pairs into 16 bits, which saturates; 7-bit weights (reduce_range) cannot. Measured on an AVX2 EPYC:
    # the CPU model's CAMs were off by 21 % of their range with 8-bit weights.
    reduce_range = target != "tensorrt"  # TensorRT's GPU kernels do not saturate: keep all 8 bits there
    quantize_static(
        str(prepared), str(output), _reader(images, input_name, batch_size, bar.update), quant_format=QuantFormat.QDQ,
        activation_type=activations, weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
        calibrate_method=calibrate, nodes_to_exclude=list(excluded), extra_options=extra,
    )
    bar.close()


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """A Constant node's value as an array, whichever of its attributes holds it (`value` is a
    tensor; `value_float(s)` / `value_int(s)` are plain numbers); None for string or sparse values,
    which no scale or zero point can be."""
    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
            dtype = np.float32 if "float" in attribute.name else np.int64
            return np.asarray(onnx.helper.get_attribute_value(attribute), dtype=dtype)
    return None


def check_tensorrt_rules(model: onnx.ModelProto) -> list[str]:
    """Everything in a Q/DQ graph that TensorRT's explicit quantization would reject or misread."""
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:  # Constant nodes hold scales/zero points in some exports
        value = _constant_value(node) if node.op_type == "Constant" else None
        if value is not None:
            constants[node.output[0]] = value
    producers = {out: node for node in model.graph.node for out in node.output}
    problems, quantizers = [], 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        quantizers += 1
        if len(node.input) < 3:
            problems.append(f"{node.name}: no zero point (defaults to uint8)")
            continue
        zero = constants.get(node.input[2])
        if zero is None:
            problems.append(f"{node.name}: zero point is not a constant")
            continue
        if zero.dtype != np.int8:
            problems.append(f"{node.name}: {zero.dtype} instead of int8")
        if np.any(zero != 0):
            problems.append(f"{node.name}: non-zero zero point (asymmetric)")
        scale = constants.get(node.input[1])
        source = node.input[0]
        if node.op_type == "DequantizeLinear" and source in constants and source not in producers:
            weight = constants[source]
            if weight.ndim == 4:  # a Conv weight: per output channel, axis 0
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                if scale is None or scale.size != weight.shape[0] or axis != 0:
                    problems.append(f"{node.name}: conv weight not quantized per output channel (axis 0)")
    if quantizers == 0:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")
    return problems
