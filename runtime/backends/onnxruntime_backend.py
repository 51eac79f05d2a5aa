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
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != self.info.in_channels:
            raise ModelError(f"expected a batch (B, {self.info.in_channels}, H, W), got {batch.shape}")
        return self.session.run(None, {self.input_name: batch})[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None
