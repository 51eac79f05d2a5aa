"""TensorRT backend (TensorRT 10/11 API): deserialize, set_input_shape, set_tensor_address,
execute_async_v3 on a stream, with pinned host and device buffers allocated once for the
profile's largest shape and reused for every call.

The engine is a plain TensorRT plan (trtexec loads it too); spamcam's metadata lives in a sidecar
`<engine>.json` that also records the TensorRT version and GPU it was built for, because a plan
only runs on the same TensorRT version and GPU model: a mismatch is reported, not crashed into.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model_info import MetadataError, ModelInfo
from .cuda_memory import DeviceBuffer, PinnedBuffer, load_cuda_api
from .host_types import host_type
from ..errors import DeviceError, ModelError

__all__ = ["TensorRTBackend", "import_tensorrt", "TENSORRT_HELP"]

TENSORRT_HELP = ("TensorRT is not installed. On a Jetson it comes with JetPack (`sudo apt install nvidia-jetpack`); "
                 "elsewhere from PyPI: `pip install tensorrt-cu12` for CUDA 12 drivers or `tensorrt-cu13` for CUDA 13 "
                 "(R580+) drivers, matching spamcam's gpu-cu12 / gpu-cu13 extra. Without an NVIDIA GPU, "
                 "use the ONNX Runtime backend: `build-engine model.onnx --backend onnxruntime`.")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise DeviceError(TENSORRT_HELP) from error
    return trt


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str | Path, *, check_build: bool = True) -> None:
        from . import sidecar_path

        path = Path(path)
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise MetadataError(f"{path}: no sidecar {sidecar.name} with spamcam metadata next to the engine; "
                                "build engines with `build-engine`, which writes both")
        self.info = ModelInfo.from_json(sidecar.read_text(), str(sidecar))
        trt = import_tensorrt()
        self.trt = trt
        self.cuda = load_cuda_api()
        if check_build:
            self._check_build(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DeviceError(f"{path}: TensorRT could not deserialize the engine (built by another TensorRT version "
                               "or for another GPU?). Rebuild it on this device with `build-engine`.")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output tensor, got {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.min_shape, _, self.max_shape = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.max_batch = int(self.max_shape[0])  # the profile's: larger batches run in chunks
        self.stream = self.cuda.stream()
        # Allocate once, for the largest shape the profile allows.
        self.context.set_input_shape(self.input_name, self.max_shape)
        max_output = tuple(self.context.get_tensor_shape(self.output_name))
        self.in_type = host_type(trt, self.engine.get_tensor_dtype(self.input_name))
        self.out_type = host_type(trt, self.engine.get_tensor_dtype(self.output_name))
        self.host_in = PinnedBuffer(self.cuda, int(np.prod(self.max_shape)), self.in_type.storage)
        self.host_out = PinnedBuffer(self.cuda, int(np.prod(max_output)), self.out_type.storage)
        self.device_in = DeviceBuffer(self.cuda, self.host_in.nbytes)
        self.device_out = DeviceBuffer(self.cuda, self.host_out.nbytes)
        self.context.set_tensor_address(self.input_name, self.device_in.pointer)
        self.context.set_tensor_address(self.output_name, self.device_out.pointer)

    def _check_build(self, path: Path) -> None:
        built = self.info.extra
        here = {"tensorrt_version": self.trt.__version__, **self.cuda.device_description()}
        mismatches = [f"{key}: built for {built.get(key)!r}, this device has {here[key]!r}"
                      for key in ("tensorrt_version", "gpu", "compute_capability")
                      if built.get(key) is not None and built.get(key) != here[key]]
        if mismatches:
            raise DeviceError(f"{path}: this engine was built elsewhere ({'; '.join(mismatches)}). TensorRT plans are "
                               "specific to the TensorRT version and GPU; rebuild it here with `build-engine`.")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = self.in_type.encode(batch)
        if batch.ndim != 4 or batch.shape[1] != self.info.in_channels:
            raise ModelError(f"expected a batch (B, {self.info.in_channels}, H, W), got {batch.shape}")
        if not all(lo <= s <= hi for lo, s, hi in zip(self.min_shape[2:], batch.shape[2:], self.max_shape[2:])):
            raise ModelError(f"input size {batch.shape[2:]} is outside the engine's profile "
                             f"{self.min_shape[2:]}..{self.max_shape[2:]}; rebuild with --min/--max sizes that cover it")
        step = self.max_shape[0]
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if not self.context.set_input_shape(self.input_name, batch.shape):
            raise ModelError(f"TensorRT rejected input shape {batch.shape}")
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        count = int(np.prod(out_shape))
        self.host_in.array[: batch.size] = batch.ravel()
        self.device_in.upload(self.host_in.array[: batch.size], self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise DeviceError("TensorRT execute_async_v3 failed")
        self.device_out.download(self.host_out.array[:count], self.stream)
        self.cuda.synchronize(self.stream)
        return self.out_type.decode(self.host_out.array[:count]).reshape(out_shape)

    def close(self) -> None:
        for buffer in (getattr(self, n, None) for n in ("host_in", "host_out", "device_in", "device_out")):
            if buffer is not None:
                buffer.free()
        if getattr(self, "stream", None) is not None:
            self.cuda.destroy_stream(self.stream)
            self.stream = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception as error:  # interpreter shutdown: CUDA may already be gone; say so, do not raise
            import sys

            print(f"spamcam: TensorRT backend cleanup: {error}", file=sys.stderr)
