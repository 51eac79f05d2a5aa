"""build-engine's CPU path: ONNX Runtime's offline-optimized model, FP32 or INT8 (U8S8), with INT8
kept only where it measures faster here and stays within the accuracy budget.

Steps: the source model (engines.source_model) -> [INT8: calibration.quantize_int8, target cpu] ->
ONNX Runtime's extended graph optimizations (`ort_optimized`) -> [INT8: time and compare both,
`_faster_within_budget`] -> the chosen model, with spamcam's metadata and the decision, renamed into place.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from calibration.quantize import DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES, quantize_int8
from runtime.model_info import read_onnx_metadata, write_onnx_metadata
from runtime.output_paths import replace_atomically, writable_file, writable_folder

from .source_model import load_source_model
from .timing import median_ms

__all__ = ["build_onnxruntime_model", "ort_optimized"]


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

    model_path, _, info = load_source_model(model_path)
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
