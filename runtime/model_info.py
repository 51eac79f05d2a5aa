"""What a deployed model must carry so the runtime needs nothing re-typed by hand.

Written by export-onnx into the ONNX model's metadata_props under one versioned key, copied by
build-engine into the engine's sidecar JSON, read back here. Adding a field means bumping VERSION
only when old readers would misread the new file.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .geometry import validate_chain
from .postprocess import LocalizerParams

__all__ = ["METADATA_KEY", "VERSION", "TRAINED_ON_KEYS", "ModelInfo", "MetadataError", "write_onnx_metadata", "read_onnx_metadata"]

METADATA_KEY = "spamcam"
VERSION = 1
TRAINED_ON_KEYS = ("dataset", "mnist_dir", "seed", "objects")  # train-cam settings that decide the splits


class MetadataError(ValueError):
    """A model file lacks spamcam's metadata, or carries a version this runtime cannot read."""


@dataclass
class ModelInfo:
    classes: list[str]
    thresholds: list[float | None]  # t_c; None where a_c <= 0 (class cannot localize)
    slopes: list[float]  # a_c: P(present) = sigmoid(a_c * pooled + b_c)
    intercepts: list[float]  # b_c
    pooling: str
    spam_kernels: list[Any]
    geometry: list[list[int]]  # (k, s, p) from input to CAM
    input_size: list[int]  # (H, W)
    in_channels: int
    ratio: float = 0.0
    flood_floor: float = 0.0
    resize_mode: str = "resize"
    layout: str = "NCHW float32 in [0, 1]; normalisation is inside the graph"
    input_name: str = "images"
    output_name: str = "cams"
    backbone: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. precision, TensorRT version, GPU

    @classmethod
    def from_checkpoint_parts(cls, config, deploy: dict[str, Any]) -> "ModelInfo":
        return cls(classes=list(config.classes), thresholds=list(deploy["thresholds"]), slopes=list(deploy["slopes"]),
                   intercepts=list(deploy["intercepts"]), pooling=config.pooling, spam_kernels=list(config.spam_kernels),
                   geometry=[list(l) for l in config.geometry], input_size=list(config.input_size),
                   in_channels=config.in_channels, ratio=float(config.ratio), flood_floor=float(config.flood_floor),
                   backbone=config.backbone)

    def localizer_params(self) -> LocalizerParams:
        return LocalizerParams(self.thresholds, validate_chain(self.geometry), tuple(self.input_size), self.ratio,
                               self.flood_floor)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelInfo":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetadataError(f"{source}: spamcam metadata is not valid JSON ({error})") from error
        version = data.pop("version", None)
        if version != VERSION:
            raise MetadataError(f"{source}: spamcam metadata version {version!r}; this runtime reads version {VERSION}. "
                                "Re-export the model with this spamcam, or upgrade spamcam.")
        known = set(cls.__dataclass_fields__)
        try:
            info = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise MetadataError(f"{source}: spamcam metadata is incomplete ({error})") from error
        n = len(info.classes)
        if not (len(info.thresholds) == len(info.slopes) == len(info.intercepts) == n):
            raise MetadataError(f"{source}: metadata lists {n} classes but not as many thresholds/slopes/intercepts")
        return info

    @property
    def trained_on(self) -> dict[str, Any]:
        """The data the model was trained on, as export-onnx recorded it (TRAINED_ON_KEYS; absent keys
        are None): the default data of eval-cam and quantize-int8, so that an evaluation of an
        MNIST128 model draws the same splits (seed) from the same digits (mnist_dir) as training did,
        never training digits into its test split."""
        recorded = self.extra.get("trained_on") or {}
        return {key: recorded.get(key) for key in TRAINED_ON_KEYS}

    def with_ratio(self, ratio: float) -> "ModelInfo":
        return replace(self, ratio=float(ratio))


def write_onnx_metadata(model, info: ModelInfo) -> None:
    """Set (replace) spamcam's key in an onnx.ModelProto's metadata_props."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()


def read_onnx_metadata(model, source: str = "model") -> ModelInfo:
    """spamcam's metadata from an onnx.ModelProto; MetadataError when it has none."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelInfo.from_json(prop.value, source)
    raise MetadataError(f"{source}: an ONNX model without spamcam metadata (no '{METADATA_KEY}' key); export it with "
                        "`export-onnx ckpt.pt`")
