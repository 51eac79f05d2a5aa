"""The first step of every build: the ONNX model a build starts from, read and checked once."""
from __future__ import annotations

from pathlib import Path

import onnx

from runtime.model_info import ModelInfo, load_onnx, read_onnx_metadata

__all__ = ["load_source_model"]


def load_source_model(model_path: str | Path) -> tuple[Path, onnx.ModelProto, ModelInfo]:
    """(path, ONNX model, its spamcam metadata), the metadata checked against the graph where ONNX
    Runtime is installed; refused with the reason otherwise (runtime.model_info, runtime.backends)."""
    model_path = Path(model_path)
    model = load_onnx(model_path)
    info = read_onnx_metadata(model, str(model_path))
    _check_graph_if_possible(model_path)
    return model_path, model, info


def _check_graph_if_possible(model_path: Path) -> None:
    """Metadata against the graph (runtime.backends.check_graph) through ONNX Runtime where it is
    installed; a Jetson without it gets the same check when the engine is first loaded."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    from runtime.backends import open_backend

    open_backend(model_path, providers=["CPUExecutionProvider"]).close()
