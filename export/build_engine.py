"""`build-engine model.onnx`: a TensorRT engine (FP16 / INT8) for NVIDIA GPUs and Jetsons, or an
optimized ONNX Runtime model (FP32 / INT8) for CPUs.

TensorRT path (TensorRT 10/11 Python API): builder -> network -> ONNX parser (its errors surfaced)
-> builder config (workspace pool limit, one optimization profile for min/opt/max batch and size,
timing cache file, optional DLA core with GPU fallback) -> serialized plan. INT8 means explicit
quantization: the Q/DQ model from calibration/ is built as a strongly typed network. FP16 uses the
weak-typing FP16 flag where the installed TensorRT still has it (TensorRT 10, JetPack 5/6); TensorRT
11 removed it, so there the model is first converted to FP16 tensors (onnxconverter-common) and built
strongly typed. The plan stays a plain TensorRT plan (`trtexec --loadEngine` works); spamcam's metadata
goes into `<engine>.json` with the TensorRT version and GPU it was built for.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from calibration.options import add_calibration_arguments
from calibration.quantize import DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES, quantize_int8
from runtime.backends import sidecar_path
from runtime.backends.tensorrt_backend import import_tensorrt
from runtime.cli import number, run_cli
from runtime.model_info import ModelInfo, load_onnx, read_onnx_metadata, write_onnx_metadata
from runtime.errors import BuildError, ConfigError, DeviceError, ModelError
from runtime.output_paths import replace_atomically, writable_file, writable_folder, write_bytes_atomic, write_text_atomic

__all__ = ["build_tensorrt_engine", "build_onnxruntime_model", "main"]


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


def _check_graph_if_possible(model_path: Path) -> None:
    """Metadata against the graph (runtime.backends.check_graph) through ONNX Runtime where it is
    installed; a Jetson without it gets the same check when the engine is first loaded."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    from runtime.backends import open_backend

    open_backend(model_path, providers=["CPUExecutionProvider"]).close()


def _static_profile_for_dla(batch: tuple[int, int, int], min_size, max_size, info: ModelInfo):
    """DLA runs only static shapes (min = opt = max): the profile collapses to its opt batch and the
    training input size, and says so when that changes what was asked for."""
    opt = batch[1]
    size = tuple(info.input_size)
    if len(set(batch)) > 1 or (min_size and tuple(min_size) != size) or (max_size and tuple(max_size) != size):
        print(f"build-engine: --dla-core needs a static shape; building for batch {opt} at {size[0]}x{size[1]} "
              "(min = opt = max). Set --min-batch = --opt-batch = --max-batch to choose the batch.", file=sys.stderr)
    return (opt, opt, opt), None, None


def build_tensorrt_engine(
    model_path: str | Path, output: str | Path | None = None, *, precision: str = "fp16", calibration: str | None = None,
    calib_samples: int = DEFAULT_CALIB_SAMPLES, calib_method: str = DEFAULT_CALIB_METHOD, batch: tuple[int, int, int] = (1, 1, 8),
    min_size=None, max_size=None, workspace_mb: int = 1024, timing_cache: str | Path | None = None,
    dla_core: int | None = None,
) -> Path:
    """Build and write the plan and its sidecar; returns the plan's path."""
    trt = import_tensorrt()  # clear error first, before any work
    from runtime.backends.cuda_memory import load_cuda_api

    if precision not in ("fp32", "fp16", "int8"):
        raise ConfigError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    device = load_cuda_api().device_description()
    model_path = Path(model_path)
    model = load_onnx(model_path)
    info = read_onnx_metadata(model, str(model_path))
    _check_graph_if_possible(model_path)
    _check_parser_opset(trt, model, model_path)
    output = writable_file(output or default_engine_path(model_path, precision), "-o")  # before building
    if timing_cache:
        writable_file(timing_cache, "--timing-cache")
    if dla_core is not None:
        batch, min_size, max_size = _static_profile_for_dla(batch, min_size, max_size, info)
    shapes = _profile_shapes(info, batch, min_size, max_size)
    with tempfile.TemporaryDirectory() as tmp:
        source, info, strongly_typed, weak_flag = _network_source(
            trt, model_path, info, precision, Path(tmp), calibration=calibration, calib_samples=calib_samples,
            calib_method=calib_method)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt, strongly_typed))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BuildError(f"TensorRT's ONNX parser rejected {source.name}: " + " | ".join(errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        _set_precision(trt, config, precision, strongly_typed, weak_flag)
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, *shapes)
        config.add_optimization_profile(profile)
        if dla_core is not None:
            _use_dla(trt, builder, config, dla_core)
        cache = _timing_cache(config, timing_cache)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BuildError("TensorRT failed to build the engine; its log above says why")
        info.extra.update({"precision": precision, "tensorrt_version": trt.__version__, **device,
                           "profile": [list(s) for s in shapes], "dla_core": dla_core})
        # The sidecar first: an engine never appears without the metadata that makes it usable.
        write_text_atomic(sidecar_path(output), info.to_json())
        write_bytes_atomic(output, bytes(plan))
        if cache is not None:
            write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return output


def _network_source(trt, model_path: Path, info: ModelInfo, precision: str, work: Path, *, calibration: str | None,
                    calib_samples: int, calib_method: str):
    """(ONNX file to parse, its metadata, strongly typed?, weak-typing precision flag or None).

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
        return source, info, True, None
    if precision == "fp16":
        weak_flag = getattr(trt.BuilderFlag, "FP16", None)
        if weak_flag is None:
            return _to_fp16(model_path, work), info, True, None
        return model_path, info, False, weak_flag
    return model_path, info, False, None


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


def build_onnxruntime_model(
    model_path: str | Path, output: str | Path | None = None, *, int8: bool = False, calibration: str | None = None,
    calib_samples: int = DEFAULT_CALIB_SAMPLES, calib_method: str = DEFAULT_CALIB_METHOD, choose: bool = True, sqnr_floor: float | None = None,
) -> Path:
    """ONNX Runtime's offline-optimized model (constant folding, fusions) for CPUs; with `int8`, the
    INT8 model in the CPU's own format (U8S8), kept only when it pays.

    INT8 is not always faster on a CPU (depthwise convolutions, small layers, no VNNI), so with
    `choose` the FP32 and INT8 models are both timed here at batch 1 and compared on the calibration
    images: INT8 is kept when it is faster and its CAM SQNR against FP32 is at least `sqnr_floor`
    (default: compare-backends' flag floor); otherwise the FP32 model is written, and the reason said.
    Uses the portable 'extended' level: 'all' would bake in this CPU's memory layouts."""
    from calibration.layer_error import CAM_SQNR_FLOOR, sqnr_db

    model_path = Path(model_path)
    info = read_onnx_metadata(load_onnx(model_path), str(model_path))
    _check_graph_if_possible(model_path)
    if output:  # checked before the minutes of work; the default name depends on what is chosen
        writable_file(output, "-o")
    else:
        writable_folder(model_path.parent, "-o (default: next to the model)")
    given_int8 = info.extra.get("precision") == "int8"
    floor = CAM_SQNR_FLOOR if sqnr_floor is None else float(sqnr_floor)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not int8 or given_int8:  # FP32 as asked, or a Q/DQ model someone made already: optimize as given
            chosen = ort_optimized(model_path, work / "model.ort.onnx")
            decision = {"chosen": "int8" if given_int8 else "fp32", "reason": "as given"}
        else:
            fp32 = ort_optimized(model_path, work / "model.ort.onnx")
            quantized = quantize_int8(model_path, work / "model.int8.onnx", calibration=calibration,
                                      samples=calib_samples, method=calib_method, target="cpu")
            int8_model = ort_optimized(quantized, work / "model.int8.ort.onnx")
            chosen, decision = int8_model, {"chosen": "int8", "reason": "INT8 asked for, without --choose"}
            if choose:
                chosen, decision = _faster_within_budget(fp32, int8_model, quantized, floor, sqnr_db)
            print(f"build-engine: {decision['reason']}", flush=True)
        suffix = ".int8.ort.onnx" if decision["chosen"] == "int8" else ".ort.onnx"
        output = Path(output) if output else model_path.with_name(model_path.name.removesuffix(".onnx") + suffix)
        model = onnx.load(str(chosen))
        chosen_info = read_onnx_metadata(model, str(chosen))
        chosen_info.extra["optimized_for"] = "onnxruntime (extended graph optimizations)"
        chosen_info.extra["cpu_choice"] = decision
        write_onnx_metadata(model, chosen_info)
        replace_atomically(output, lambda temporary: onnx.save(model, str(temporary)))
    return output


def ort_optimized(source: Path, output: Path) -> Path:
    """ONNX Runtime's extended graph optimizations, saved, with the source's spamcam metadata."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(output)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(output))
    write_onnx_metadata(model, read_onnx_metadata(onnx.load(str(source)), str(source)))
    onnx.save(model, str(output))
    return output


def _faster_within_budget(fp32: Path, int8: Path, quantized: Path, floor: float, sqnr_db) -> tuple[Path, dict]:
    """Time both at batch 1 on this CPU and compare their CAMs on the calibration images."""
    from calibration.dataset import calibration_images
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    info = read_onnx_metadata(onnx.load(str(quantized)), str(quantized))
    calibration = info.extra["calibration"]
    images = np.stack(calibration_images(calibration["source"], info, 16, info.trained_on["mnist_dir"])).astype(np.float32)
    backends = {"fp32": OnnxRuntimeBackend(fp32, providers=["CPUExecutionProvider"]),
                "int8": OnnxRuntimeBackend(int8, providers=["CPUExecutionProvider"])}
    cams = {name: backend.infer(images) for name, backend in backends.items()}
    sqnr = sqnr_db(cams["fp32"], cams["int8"])
    ms = {name: median_ms(backend, images[:1]) for name, backend in backends.items()}
    speedup = ms["fp32"] / ms["int8"]
    measured = (f"INT8 {ms['int8']:.2f} ms vs FP32 {ms['fp32']:.2f} ms at batch 1 on this CPU ({speedup:.2f}x), "
                f"CAM SQNR {sqnr:.1f} dB on {len(images)} calibration images (budget >= {floor:g} dB)")
    decision = {"fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "cam_sqnr_db": sqnr, "sqnr_floor_db": floor}
    if speedup > 1.0 and sqnr >= floor:
        return int8, decision | {"chosen": "int8", "reason": f"{measured}: keeping INT8"}
    why = "slower than FP32" if speedup <= 1.0 else "outside the accuracy budget"
    return fp32, decision | {"chosen": "fp32", "reason": f"{measured}: INT8 is {why}, keeping FP32"}


def median_ms(backend, batch: np.ndarray, seconds: float = 1.5, runs: int = 50) -> float:
    """Median latency of `backend.infer(batch)` in ms: a warm-up call, then at least 5 and at most
    `runs` timed calls within about `seconds` (benchmarks/cpu_int8.py uses it too)."""
    backend.infer(batch)  # warm-up: allocation, kernel selection
    times, start = [], time.perf_counter()
    while len(times) < 5 or (len(times) < runs and time.perf_counter() - start < seconds):
        begin = time.perf_counter()
        backend.infer(batch)
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))


EXAMPLES = """examples:
  build-engine model.onnx --fp16                              # TensorRT, writes model.fp16.engine + .json
  build-engine model.int8.onnx --int8                         # TensorRT from a quantize-int8 model
  build-engine model.onnx --int8 --calib ~/frames/ --max-batch 4 --timing-cache trt.cache
  build-engine model.onnx --fp16 --dla-core 0                 # Jetson DLA, GPU fallback
  build-engine model.onnx --backend onnxruntime --int8       # CPU: U8S8 INT8 if it is faster here, else FP32

TensorRT comes with JetPack on a Jetson, or from PyPI elsewhere (`pip install tensorrt-cu12`, or
`tensorrt-cu13` for R580+ drivers). DLA (--dla-core) needs a static shape, so the profile becomes
min = opt = max. The engine only runs on the TensorRT version and GPU it was built with: build it on the target device.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build-engine", description="Compile an exported spamcam ONNX model for a device.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX model from export-onnx (or quantize-int8)")
    p.add_argument("-o", "--output", help="default: next to the model (MODEL.PRECISION.engine, or .ort.onnx)")
    p.add_argument("--backend", default="tensorrt", choices=["tensorrt", "onnxruntime"])
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="TensorRT FP16 (the default for tensorrt)")
    precision.add_argument("--int8", action="store_true", help="INT8 by explicit (Q/DQ) quantization")
    precision.add_argument("--fp32", action="store_true")
    p.add_argument("--min-batch", type=number(int, minimum=1), default=1)
    p.add_argument("--opt-batch", type=number(int, minimum=1), default=1)
    p.add_argument("--max-batch", type=number(int, minimum=1), default=8)
    p.add_argument("--min-size", type=number(int, minimum=1), nargs=2, metavar=("H", "W"), help="smallest input (default: training size)")
    p.add_argument("--max-size", type=number(int, minimum=1), nargs=2, metavar=("H", "W"), help="largest input (default: training size)")
    p.add_argument("--workspace", type=number(int, minimum=1), default=1024, help="workspace memory pool limit, MiB")
    p.add_argument("--timing-cache", help="read and update this timing cache file (faster rebuilds)")
    p.add_argument("--dla-core", type=number(int, minimum=0), help="build for this DLA core (Jetson), falling back to the GPU")
    p.add_argument("--always-int8", action="store_true",
                   help="onnxruntime --int8: keep INT8 even where it measures slower than FP32 or drifts past the budget")
    add_calibration_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        if args.backend == "onnxruntime":
            if args.fp16:
                raise ConfigError("ONNX Runtime on a CPU has no FP16 speed-up; use --int8 or the default FP32")
            path = build_onnxruntime_model(args.model, args.output, int8=args.int8, calibration=args.calib,
                                           calib_samples=args.calib_samples, calib_method=args.calib_method,
                                           choose=not args.always_int8)
            chosen = read_onnx_metadata(onnx.load(str(path)), str(path)).extra["cpu_choice"]["chosen"]
            print(f"build-engine: wrote {path} (ONNX Runtime, {chosen.upper()})")
            return 0
        precision = "int8" if args.int8 else "fp32" if args.fp32 else "fp16"
        path = build_tensorrt_engine(args.model, args.output, precision=precision, calibration=args.calib,
                                     calib_samples=args.calib_samples, calib_method=args.calib_method,
                                     batch=(args.min_batch, args.opt_batch, args.max_batch), min_size=args.min_size,
                                     max_size=args.max_size, workspace_mb=args.workspace,
                                     timing_cache=args.timing_cache, dla_core=args.dla_core)
        print(f"build-engine: wrote {path} and {sidecar_path(path).name} (TensorRT {precision.upper()})")
        return 0

    return run_cli("build-engine", work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
