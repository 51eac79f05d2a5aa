"""Where an INT8 model loses accuracy: per layer, how far its quantized weights and its output drift
from the FP32 model on the same images, as SQNR in dB (higher is better; ~40 dB is a clean INT8
layer, below ~20 dB something is wrong: a scale, a clipped range, an outlier channel).

Built on ONNX Runtime's own `qdq_loss_debug` (it runs both models with every intermediate tensor as
an output and pairs them by name), not a re-implementation. The FP32 side is the model as
quantize-int8 pre-processes it (ONNX Runtime's `quant_pre_process` folds some nodes), so that names
and weights pair up. Output SQNR against FP32 accumulates along the graph, so each layer also gets
the dB it *loses*: its input's SQNR minus its output's. That names the layer where damage starts (a
wrong weight scale, or an input whose per-tensor range is ruled by one outlier channel, which
crushes the others while its own SQNR still looks fine) rather than every layer after it, and is
what `quantize-int8 --exclude-worst` ranks by.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

__all__ = ["LayerError", "layer_errors", "worst_layers", "sqnr_db", "CAM_SQNR_FLOOR", "WEIGHT_SQNR_FLOOR", "OUTPUT_SQNR_FLOOR", "format_layer_errors"]

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
WEIGHT_SQNR_FLOOR = 25.0  # dB: per-channel INT8 weights reach ~40; below this a weight scale is wrong
OUTPUT_SQNR_FLOOR = 15.0  # dB: a layer output this noisy moves CAM peaks and boxes
CAM_SQNR_FLOOR = 20.0  # dB of CAM SQNR below which a deployed model is flagged (INT8 LeNet: ~25-35)
SQNR_CAP = 100.0  # dB: an exact tensor (the graph input of the FP32 model) counts as this


@dataclass
class LayerError:
    node: str
    op_type: str
    output: str
    weight_sqnr: float | None  # dB; None where the layer's weight is not quantized
    input_sqnr: float | None  # dB; the layer's input in the INT8 model vs the FP32 model
    output_sqnr: float | None  # dB; the layer's output in the INT8 model vs the FP32 model (accumulated)

    @property
    def lost_db(self) -> float:
        """SQNR this layer loses: input's minus output's (the graph input counts as exact)."""
        if self.output_sqnr is None:
            return 0.0
        before = SQNR_CAP if self.input_sqnr is None else min(self.input_sqnr, SQNR_CAP)
        return max(0.0, before - min(self.output_sqnr, SQNR_CAP))

    @property
    def flagged(self) -> bool:
        return (self.weight_sqnr is not None and self.weight_sqnr < WEIGHT_SQNR_FLOOR) or \
            (self.output_sqnr is not None and self.output_sqnr < OUTPUT_SQNR_FLOOR)

    def to_dict(self) -> dict:
        return asdict(self) | {"lost_db": round(self.lost_db, 2), "flagged": self.flagged}


class _Batches:
    """A CalibrationDataReader over fixed images (ONNX Runtime iterates it once per model)."""

    def __init__(self, name: str, images: np.ndarray, batch_size: int = 16) -> None:
        self.name, self.images, self.batch_size, self.position = name, images, batch_size, 0

    def get_next(self):
        if self.position >= len(self.images):
            return None
        batch = self.images[self.position : self.position + self.batch_size]
        self.position += len(batch)
        return {self.name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __iter__(self):
        self.position = 0
        while (item := self.get_next()) is not None:
            yield item

    def rewind(self) -> None:
        self.position = 0


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, 20·log10(‖ref‖ / ‖ref − other‖), as ONNX Runtime's
    qdq_loss_debug defines it; inf for identical arrays."""
    reference, other = np.asarray(reference, np.float64).ravel(), np.asarray(other, np.float64).ravel()
    noise = np.linalg.norm(reference - other)
    if noise == 0:
        return math.inf
    return 20 * math.log10(max(np.linalg.norm(reference), np.finfo(float).eps) / noise)


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def layer_errors(fp32_path: str | Path, int8_path: str | Path, images: np.ndarray) -> list[LayerError]:
    """Per quantizable layer (graph order): weight, input and output SQNR of the INT8 model."""
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         compute_weight_error, create_activation_matching,
                                                         create_weight_matching,
                                                         modify_model_output_intermediate_tensors)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "fp32.pre.onnx"
        quant_pre_process(str(fp32_path), str(reference), skip_symbolic_shape=True)
        fp32 = onnx.load(str(reference))
        input_name = fp32.graph.input[0].name
        activations = {}
        for key, path in (("float", reference), ("qdq", Path(int8_path))):
            augmented = Path(tmp) / f"{key}.augmented.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            activations[key] = collect_activations(str(augmented), _Batches(input_name, images))
        weight_errors = compute_weight_error(create_weight_matching(str(reference), str(int8_path)))
    errors = compute_activation_error(create_activation_matching(activations["qdq"], activations["float"]))
    layers = []
    for node in fp32.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        weight = node.input[1] if len(node.input) > 1 else None
        layers.append(LayerError(node.name, node.op_type, node.output[0], _finite(weight_errors.get(weight)),
                                 _finite(errors.get(node.input[0], {}).get("xmodel_err")),
                                 _finite(errors.get(node.output[0], {}).get("xmodel_err"))))
    return layers


def worst_layers(layers: list[LayerError], count: int) -> list[str]:
    """The `count` layers that lose the most SQNR: where keeping float helps most."""
    ranked = sorted((layer for layer in layers if layer.output_sqnr is not None), key=lambda layer: -layer.lost_db)
    return [layer.node for layer in ranked[:count]]


def format_layer_errors(layers: list[dict]) -> str:
    """A table of `LayerError.to_dict()` rows."""
    def db(value):
        return "-" if value is None else f"{value:.1f}"

    lines = ["| layer | op | weight SQNR (dB) | input vs FP32 (dB) | output vs FP32 (dB) | dB lost here | flag |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for layer in layers:
        lines.append(f"| {layer['node']} | {layer['op_type']} | {db(layer['weight_sqnr'])} | {db(layer['input_sqnr'])} | "
                     f"{db(layer['output_sqnr'])} | {layer['lost_db']:.1f} | {'**check**' if layer['flagged'] else ''} |")
    return "\n".join(lines)
