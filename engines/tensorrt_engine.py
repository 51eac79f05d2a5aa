"""build-engine's TensorRT path (TensorRT 10/11 Python API), as small steps in the manner of
Polygraphy's loaders, each taking what the one before made:

    ONNX model (engines.source_model)  -> network source: the file TensorRT parses (INT8: the Q/DQ
                                          model from calibration/; TensorRT 11 FP16: FP16 tensors)
    -> parsed network (`parse_network`: builder, network, ONNX parser, its errors surfaced)
    -> builder config (`builder_config`: workspace pool, precision flags, one optimization profile
                                          for min/opt/max batch and size, DLA, timing cache)
    -> serialized plan (`serialize_plan`)
    -> engine file (`save_engine`: the sidecar JSON with spamcam's metadata first, then the plan)

INT8 means explicit quantization: the Q/DQ model is built as a strongly typed network. FP16 uses the
weak-typing FP16 flag where the installed TensorRT still has it (TensorRT 10, JetPack 5/6); TensorRT
11 removed it, so there the model is first converted to FP16 tensors (onnxconverter-common) and built
strongly typed. The plan stays a plain TensorRT plan (`trtexec --loadEngine` works); spamcam's metadata
goes into `<engine>.json` with the TensorRT version and GPU it was built for.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from calibration.quantize import DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES, quantize_int8
from runtime.backends import sidecar_path
from runtime.backends.tensorrt_backend import import_tensorrt
from runtime.errors import BuildError, ConfigError, DeviceError, ModelError
from runtime.model_info import ModelInfo, read_onnx_metadata
from runtime.output_paths import writable_file, write_bytes_atomic, write_text_atomic

from .source_model import load_source_model

__all__ = ["build_tensorrt_engine", "default_engine_path", "network_source", "parse_network", "builder_config",
           "serialize_plan", "save_engine", "PRECISIONS"]

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class NetworkSource:
    """The ONNX file TensorRT will parse, its metadata, and how its precision is expressed."""

    path: Path
    info: ModelInfo
    strongly_typed: bool
    weak_flag: Any = None  # TensorRT's FP16 builder flag where weak typing still exists


@dataclass
class ParsedNetwork:
    builder: Any
    network: Any
    parser: Any  # kept: the network refers to the parser's weights until the plan is built


def build_tensorrt_engine(
    model_path: str | Path, output: str | Path | None = None, *, precision: str = "fp16", calibration: str | None = None,
    calib_samples: int = DEFAULT_CALIB_SAMPLES, calib_method: str = DEFAULT_CALIB_METHOD, batch: tuple[int, int, int] = (1, 1, 8),
    min_size=None, max_size=None, workspace_mb: int = 1024, timing_cache: str | Path | None = None,
    dla_core: int | None = None,
) -> Path:
    """Build and write the plan and its sidecar; returns the plan's path. The steps are this module's
    functions, in order; every input and output is checked before the minutes of building."""
    trt = import_tensorrt()  # clear error first, before any work
    from runtime.backends.cuda_memory import load_cuda_api

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    device = load_cuda_api().device_description()
    model_path, model, info = load_source_model(model_path)
    _check_parser_opset(trt, model, model_path)
    output = writable_file(output or default_engine_path(model_path, precision), "-o")  # before building
    if timing_cache:
        writable_file(timing_cache, "--timing-cache")
    if dla_core is not None:
        batch, min_size, max_size = _static_profile_for_dla(batch, min_size, max_size, info)
    shapes = _profile_shapes(info, batch, min_size, max_size)
    with tempfile.TemporaryDirectory() as tmp:
        source = network_source(trt, model_path, info, precision, Path(tmp), calibration=calibration,
                                calib_samples=calib_samples, calib_method=calib_method)
        parsed = parse_network(trt, source)
        config, cache = builder_config(trt, parsed, source, precision=precision, shapes=shapes, workspace_mb=workspace_mb,
                                       dla_core=dla_core, timing_cache=timing_cache)
        plan = serialize_plan(parsed, config)
        info = source.info
        network = parsed.network
        io_tensors = ([network.get_input(i) for i in range(network.num_inputs)]
                      + [network.get_output(i) for i in range(network.num_outputs)])
        info.extra.update({"precision": precision, "tensorrt_version": trt.__version__, **device,
                           "profile": [list(s) for s in shapes], "dla_core": dla_core,
                           # what export-triton declares (Triton checks a plan's I/O types against its config)
                           "io_types": {t.name: t.dtype.name for t in io_tensors}})
        save_engine(plan, info, output)
        if cache is not None:
            write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return output


def network_source(trt, model_path: Path, info: ModelInfo, precision: str, work: Path, *, calibration: str | None,
                   calib_samples: int, calib_method: str) -> NetworkSource:
    """The file to parse for `precision`.

    INT8 is explicit quantization: a Q/DQ model (made now from `calibration` when an FP32 model is
    given), built strongly typed so that the Q/DQ nodes decide. FP16 uses the FP16 builder flag where
    TensorRT still has it (8.x-10.x); TensorRT 11 removed weak typing, so there the model is converted
    to FP16 tensors and built strongly typed."""
    if precision == "int8":
        source = model_path
        if info.extra.get("precision") != "int8":
            source = quantize_int8(model_path, work / "model.int8.onnx", calibration=calibration,
                                   samples=calib_samples, method=calib_method)
            info = read_onnx_metadata(onnx.load(str(source)), str(source))
        return NetworkSource(source, info, strongly_typed=True)
    if precision == "fp16":
        weak_flag = getattr(trt.BuilderFlag, "FP16", None)
        if weak_flag is None:
            return NetworkSource(_to_fp16(model_path, work), info, strongly_typed=True)
        return NetworkSource(model_path, info, strongly_typed=False, weak_flag=weak_flag)
    return NetworkSource(model_path, info, strongly_typed=False)


def parse_network(trt, source: NetworkSource) -> ParsedNetwork:
    """ONNX -> TensorRT network; the parser's own errors, all of them, when it refuses the model."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, source.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"TensorRT's ONNX parser rejected {source.path.name}: " + " | ".join(errors))
    return ParsedNetwork(builder, network, parser)


def builder_config(trt, parsed: ParsedNetwork, source: NetworkSource, *, precision: str, shapes, workspace_mb: int,
                   dla_core: int | None = None, timing_cache: str | Path | None = None):
    """network -> builder config: (config, timing cache or None)."""
    config = parsed.builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    _set_precision(trt, config, precision, source.strongly_typed, source.weak_flag)
    profile = parsed.builder.create_optimization_profile()
    profile.set_shape(parsed.network.get_input(0).name, *shapes)
    config.add_optimization_profile(profile)
    if dla_core is not None:
        _use_dla(trt, parsed.builder, config, dla_core)
    return config, _timing_cache(config, timing_cache)


def serialize_plan(parsed: ParsedNetwork, config) -> bytes:
    """config -> serialized plan (the minutes of building happen here)."""
    plan = parsed.builder.build_serialized_network(parsed.network, config)
    if plan is None:
        raise BuildError("TensorRT failed to build the engine; its log above says why")
    return bytes(plan)


def save_engine(plan: bytes, info: ModelInfo, output: Path) -> None:
    """The sidecar first: an engine never appears without the metadata that makes it usable."""
    write_text_atomic(sidecar_path(output), info.to_json())
    write_bytes_atomic(output, plan)


def _profile_shapes(info: ModelInfo, batch: tuple[int, int, int], min_size, max_size):
    height, width = info.input_size
    min_hw = tuple(min_size) if min_size else (height, width)
    max_hw = tuple(max_size) if max_size else (height, width)
    channels = info.in_channels
    return ((batch[0], channels, *min_hw), (batch[1], channels, height, width), (batch[2], channels, *max_hw))


def _to_fp16(model_path: Path, work: Path) -> Path:
    try:
        from onnxconverter_common import float16
    except ImportError as error:
        raise DeviceError("this TensorRT has no FP16 builder flag (TensorRT 11 builds strongly typed networks only); "
                           "converting the model to FP16 needs `pip install onnxconverter-common` (in spamcam[gpu])") from error
    model = float16.convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True)
    converted = work / "model.fp16.onnx"
    onnx.save(model, str(converted))
    return converted


def default_engine_path(model_path: Path, precision: str) -> Path:
    """model.onnx -> model.fp16.engine; model.int8.onnx -> model.int8.engine (not model.int8.int8.engine)."""
    stem = model_path.stem
    return model_path.with_name(f"{stem if stem.endswith('.' + precision) else f'{stem}.{precision}'}.engine")


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _network_flags(trt, strongly_typed: bool) -> int:
    """TensorRT 8.x/9.x need an explicit-batch network for the ONNX parser (`create_network(0)` is an
    implicit-batch network there, which the parser rejects); from 10 every network is explicit-batch
    and the flag is deprecated. STRONGLY_TYPED exists from 9.1 on."""
    flags = 0
    if tensorrt_major(trt) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    strong = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed and strong is not None:  # TensorRT 11: every network is strongly typed anyway
        flags |= 1 << int(strong)
    return flags


def _precision_flags(trt, precision: str, strongly_typed: bool, weak_flag) -> list:
    """Builder flags for the precision. A strongly typed network takes none (its tensors' types decide,
    and TensorRT refuses precision flags on it); without STRONGLY_TYPED (TensorRT 8.x) a Q/DQ network
    still needs the INT8 flag for its quantized layers to run in INT8."""
    flags = [weak_flag] if weak_flag is not None else []
    has_strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    if precision == "int8" and not (strongly_typed and has_strong):
        flags.append(trt.BuilderFlag.INT8)
    return flags


OPSET_BEFORE_TENSORRT_10 = 17  # TensorRT 8.6's ONNX parser reads opsets up to 17


def _check_parser_opset(trt, model: onnx.ModelProto, model_path: Path) -> None:
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if tensorrt_major(trt) < 10 and opset > OPSET_BEFORE_TENSORRT_10:
        raise ModelError(f"{model_path} is ONNX opset {opset}, but TensorRT {trt.__version__}'s parser reads opsets up to "
                         f"{OPSET_BEFORE_TENSORRT_10}: re-export it with `export-onnx --legacy` (opset 17)")


def _static_profile_for_dla(batch: tuple[int, int, int], min_size, max_size, info: ModelInfo):
    """DLA runs only static shapes (min = opt = max): the profile collapses to its opt batch and the
    training input size, and says so when that changes what was asked for."""
    opt = batch[1]
    size = tuple(info.input_size)
    if len(set(batch)) > 1 or (min_size and tuple(min_size) != size) or (max_size and tuple(max_size) != size):
        print(f"build-engine: --dla-core needs a static shape; building for batch {opt} at {size[0]}x{size[1]} "
              "(min = opt = max). Set --min-batch = --opt-batch = --max-batch to choose the batch.", file=sys.stderr)
    return (opt, opt, opt), None, None


def _set_precision(trt, config, precision: str, strongly_typed: bool, weak_flag) -> None:
    for flag in _precision_flags(trt, precision, strongly_typed, weak_flag):
        config.set_flag(flag)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 is on by default on Ampere and newer (RTX, H100, Orin): FP32 means FP32, so that an
        # FP32 engine matches ONNX Runtime to 1e-3 instead of TF32's ~1e-2.
        config.clear_flag(trt.BuilderFlag.TF32)


def _use_dla(trt, builder, config, dla_core: int) -> None:
    if builder.num_DLA_cores == 0:
        raise DeviceError(f"--dla-core {dla_core}: this device has no DLA (Jetson AGX/NX Orin and Xavier have one, "
                           "with JetPack's TensorRT 10.x; TensorRT 11.0-11.3 have no DLA support)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU


def _timing_cache(config, timing_cache: str | Path | None):
    """Read (or start) the timing cache file and attach it; None without one."""
    if not timing_cache:
        return None
    cache_path = Path(timing_cache)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
