"""Inference backends behind one interface: `open_backend(path)` picks by file type, `infer(batch)`
returns CAMs. ONNX Runtime for `.onnx`, TensorRT for `.engine` / `.plan` (with a sidecar JSON), and a
Triton Inference Server for `triton://host:port/model` URIs.

Heavy dependencies are imported inside each backend, so `import runtime.backends` works anywhere
and the error, when one is needed, names what to install.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..model_info import MetadataError, ModelInfo
from ..postprocess import BoxSettings
from ..errors import ModelError, NotFoundError
from ..output_paths import replace_atomically, write_text_atomic

__all__ = ["Backend", "open_backend", "check_graph", "store_box_settings", "ENGINE_SUFFIXES", "sidecar_path"]

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class Backend(Protocol):
    info: ModelInfo
    name: str

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, C_in, H, W) float32 in [0, 1] -> CAMs (B, C, N, M) float32."""

    def close(self) -> None: ...


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def open_backend(path: str | Path, **options) -> Backend:
    """ONNX Runtime for .onnx; TensorRT for .engine/.plan/.trt. Options go to the backend
    (ONNX Runtime: providers, threads, spinning; TensorRT: check_build; Triton: timeout). A TensorRT engine's batch limit is
    its optimization profile's, fixed by `build-engine --max-batch`; larger batches run in chunks."""
    backend = _open(path, options)
    try:
        check_graph(backend, str(path))
    except Exception:
        backend.close()
        raise
    return backend


def _open(path: str | Path, options: dict) -> Backend:
    from .triton_backend import is_triton_uri

    if is_triton_uri(path):  # a URI, not a file: Path() would fold its "//"
        from .triton_backend import TritonBackend

        return TritonBackend(path, **options)
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, **options)
    if path.suffix in ENGINE_SUFFIXES:
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, **options)
    raise ModelError(f"{path}: unknown model type {path.suffix!r}; expected .onnx or a TensorRT {'/'.join(ENGINE_SUFFIXES)}")


def check_graph(backend: Backend, source: str) -> None:
    """Run the graph once on a blank input of the metadata's size and check its CAMs against the
    metadata (classes, geometry): a model whose metadata lies is refused at load, with the field named,
    instead of marking every frame bad."""
    info = backend.info
    blank = np.zeros((1, info.in_channels, *info.input_size), dtype=np.float32)
    try:
        cams = backend.infer(blank)
    except Exception as error:  # ORT/TensorRT raise their own types when the input does not fit the graph
        raise MetadataError(f"{source}: the graph does not run on a {info.in_channels}x{info.input_size[0]}x"
                            f"{info.input_size[1]} input, the size its metadata fields 'in_channels'/'input_size' "
                            f"give ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from error
    info.check_cams(tuple(np.shape(cams)), source)


def store_box_settings(path: str | Path, settings: BoxSettings) -> None:
    """Write tuned box settings (projection, relative floor, r) into a deployed model's metadata
    (ONNX metadata_props or the engine sidecar)."""
    path = Path(path)
    if path.suffix in ENGINE_SUFFIXES:
        sidecar = sidecar_path(path)
        info = ModelInfo.from_json(sidecar.read_text(), str(sidecar)).with_box_settings(settings)
        write_text_atomic(sidecar, info.to_json())
        return
    import onnx

    from ..model_info import read_onnx_metadata, write_onnx_metadata

    model = onnx.load(str(path))
    write_onnx_metadata(model, read_onnx_metadata(model, str(path)).with_box_settings(settings))
    replace_atomically(path, lambda temporary: onnx.save(model, str(temporary)))
