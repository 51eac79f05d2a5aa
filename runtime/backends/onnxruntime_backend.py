"""ONNX Runtime backend: TensorRT -> CUDA -> CPU execution providers, whichever are available."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..model_info import info_from_metadata
from ..errors import DeviceError, ModelError

__all__ = ["OnnxRuntimeBackend", "PREFERRED_PROVIDERS", "DEFAULT_SPINNING"]

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
DEFAULT_SPINNING = False  # ORT's intra-op worker threads do not spin between runs (see __init__)


def _import_ort():
    try:
        import onnxruntime
    except ImportError as error:
        raise DeviceError("ONNX Runtime is not installed: `pip install onnxruntime` (CPU) or "
                           "`pip install onnxruntime-gpu` (NVIDIA GPUs), e.g. via spamcam's [cpu] or [gpu] extra") from error
    return onnxruntime


def _tensorrt_int8_on_cpu(info, providers: Sequence[str]) -> bool:
    """A TensorRT-form (S8S8 symmetric Q/DQ) INT8 model that ONNX Runtime would run on the CPU."""
    return str(info.extra.get("int8_format", "")).startswith("S8S8") and providers[:1] == ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None,
                 spinning: bool = DEFAULT_SPINNING) -> None:
        ort = _import_ort()
        path = Path(path)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
        else:
            missing = [p for p in providers if p not in available]
            if missing:
                raise DeviceError(f"ONNX Runtime providers {missing} are not available here (have: {available})")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning: ORT's worker threads keep polling for work after each run. That saves the wake-up
        # of the next run but takes the CPU from the camera loop's own work (decode, resize, drawing);
        # the default is chosen by measurement (benchmarks/edge_app.py, docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as error:  # ORT raises its own exception types (InvalidGraph, Fail, ...)
            raise ModelError(f"{path}: ONNX Runtime cannot load this model ({error})") from error
        self.info = info_from_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        if _tensorrt_int8_on_cpu(self.info, self.session.get_providers()):
            # ONNX Runtime fuses Q/DQ pairs into integer kernels that, on x86 CPUs without VNNI, add
            # products in 16 bits and saturate (an AVX2 EPYC: CAM SQNR 16.8 dB). Unfused, each Q/DQ
            # rounds and clips in float: the arithmetic TensorRT does, which is what such a file is for.
            options.add_session_config_entry("session.disable_quant_qdq", "1")
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != self.info.in_channels:
            raise ModelError(f"expected a batch (B, {self.info.in_channels}, H, W), got {batch.shape}")
        return self.session.run(None, {self.input_name: batch})[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None
