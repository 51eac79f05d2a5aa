"""What a deployed model must carry so the runtime needs nothing re-typed by hand.

Written by export-onnx into the ONNX model's metadata_props under one versioned key, copied by
build-engine into the engine's sidecar JSON, read back here. Adding a field means bumping VERSION
only when old readers would misread the new file.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .confidence import ClassifierHead
from .geometry import cam_size, validate_chain
from .postprocess import PROJECTIONS, BoxSettings, LocalizerParams
from .preprocess import RESIZE_MODES
from .scores import POOLINGS
from .errors import ModelError, NotFoundError

__all__ = ["METADATA_KEY", "VERSION", "TRAINED_ON_KEYS", "ModelInfo", "MetadataError", "write_onnx_metadata", "read_onnx_metadata", "info_from_metadata",
           "load_onnx"]

METADATA_KEY = "spamcam"
VERSION = 1
TRAINED_ON_KEYS = ("dataset", "mnist_dir", "seed", "objects")  # train-cam settings that decide the splits


class MetadataError(ModelError):
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
    ratio_y: float | None = None  # absent from older models' metadata: `ratio` for heights too
    flood_floor: float = 0.0
    relative_floor: float = 0.0  # absent from older models' metadata: the paper's post-processing
    projection: str = "theoretical"
    confidence_peak_scales: list[float] | None = None  # absent from older models' metadata: the instance form
    confidence_peak_offsets: list[float] | None = None  # absent from older models' metadata: zeros
    resize_mode: str = "resize"
    layout: str = "NCHW float32 in [0, 1]; normalisation is inside the graph"
    input_name: str = "images"
    output_name: str = "cams"
    backbone: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. precision, TensorRT version, GPU

    @classmethod
    def from_checkpoint_parts(cls, config, deploy: dict[str, Any]) -> "ModelInfo":
        """From a checkpoint's ModelConfig (any dataclass) and deploy section: every field the two share
        is taken by name, so a field added to both travels without being typed here again."""
        shared = {f.name for f in fields(cls)} & set(asdict(config))
        values = {name: value for name, value in asdict(config).items() if name in shared}  # deep copies
        return cls(**values, **{key: list(deploy[key]) for key in ("thresholds", "slopes", "intercepts")})

    def classifier_head(self) -> ClassifierHead:
        """The pooling and output affine that turn this model's CAMs into P(present) (box confidence)."""
        head = ClassifierHead(self.pooling, tuple(self.spam_kernels), np.asarray(self.slopes, dtype=np.float64),
                              np.asarray(self.intercepts, dtype=np.float64))
        return head.for_settings(BoxSettings.of(self))  # the confidence's form, as the model stores it

    def localizer_params(self) -> LocalizerParams:
        return LocalizerParams(self.thresholds, validate_chain(self.geometry), tuple(self.input_size), self.ratio,
                               self.flood_floor, projection=self.projection, relative_floor=self.relative_floor,
                               ratio_y=self.ratio_y)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelInfo":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetadataError(f"{source}: spamcam metadata is not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: spamcam metadata is a JSON {type(data).__name__}, not an object; re-export the "
                                "model with `export-onnx`")
        version = data.pop("version", None)
        if version != VERSION:
            raise MetadataError(f"{source}: spamcam metadata version {version!r}; this runtime reads version {VERSION}. "
                                "Re-export the model with this spamcam, or upgrade spamcam.")
        known = set(cls.__dataclass_fields__)
        try:
            info = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise MetadataError(f"{source}: spamcam metadata is incomplete ({error})") from error
        info.validate(source)
        return info

    def validate(self, source: str = "model") -> "ModelInfo":
        """Refuse metadata the runtime would misread, naming the field: at load, once, rather than a
        bad result (or an error) on every frame."""
        def bad(name: str, why: str) -> MetadataError:
            return MetadataError(f"{source}: metadata field {name!r} {why}; re-export the model with `export-onnx`")

        if not isinstance(self.classes, list) or not self.classes or not all(isinstance(c, str) and c for c in self.classes) \
                or len(set(self.classes)) != len(self.classes):
            raise bad("classes", f"must be a non-empty list of distinct names, got {self.classes!r}")
        n = len(self.classes)
        for name in ("thresholds", "slopes", "intercepts"):
            values = getattr(self, name)
            if not isinstance(values, list) or len(values) != n:
                raise bad(name, f"must list one value per class ({n}), got {values!r}")
            if not all((v is None and name == "thresholds") or (_is_number(v) and math.isfinite(v)) for v in values):
                raise bad(name, f"must hold finite numbers{' or null' if name == 'thresholds' else ''}, got {values!r}")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.spam_kernels, list) or not self.spam_kernels or not all(
                str(k).upper() == "N" or (str(k).isdigit() and int(k) >= 1) for k in self.spam_kernels):
            raise bad("spam_kernels", f"must list positive window sizes or 'N', got {self.spam_kernels!r}")
        try:
            chain = validate_chain(self.geometry)
        except (TypeError, ValueError) as error:
            raise bad("geometry", f"is malformed ({error})") from error
        if not isinstance(self.input_size, list) or len(self.input_size) != 2 or \
                not all(isinstance(v, int) and v >= 1 for v in self.input_size):
            raise bad("input_size", f"must be [height, width] in pixels, got {self.input_size!r}")
        if any(cam_size(chain, v) < 1 for v in self.input_size):
            raise bad("geometry", f"gives no CAM pixel for the input size {self.input_size}")
        if not isinstance(self.in_channels, int) or self.in_channels not in (1, 3):
            raise bad("in_channels", f"must be 1 (grey) or 3 (colour), got {self.in_channels!r}")
        if not (_is_number(self.ratio) and -1 < self.ratio < 1):
            raise bad("ratio", f"must be a number in (-1, 1), got {self.ratio!r}")
        if self.ratio_y is not None and not (_is_number(self.ratio_y) and -1 < self.ratio_y < 1):
            raise bad("ratio_y", f"must be null or a number in (-1, 1), got {self.ratio_y!r}")
        if not (_is_number(self.flood_floor) and math.isfinite(self.flood_floor)):
            raise bad("flood_floor", f"must be a finite number, got {self.flood_floor!r}")
        scales = self.confidence_peak_scales
        if scales is not None and not (isinstance(scales, list) and len(scales) == n and all(
                _is_number(v) and math.isfinite(v) and v > 0 for v in scales)):
            raise bad("confidence_peak_scales", f"must be null or one positive number per class ({n}), got {scales!r}")
        offsets = self.confidence_peak_offsets
        if offsets is not None and not (scales is not None and isinstance(offsets, list) and len(offsets) == n and all(
                _is_number(v) and math.isfinite(v) for v in offsets)):
            raise bad("confidence_peak_offsets", f"must be null or, with confidence_peak_scales, one finite number per "
                                                 f"class ({n}), got {offsets!r}")
        if not (_is_number(self.relative_floor) and 0 <= self.relative_floor < 1):
            raise bad("relative_floor", f"must be a number in [0, 1), got {self.relative_floor!r}")
        if self.projection not in PROJECTIONS:
            raise bad("projection", f"must be one of {', '.join(PROJECTIONS)}, got {self.projection!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise bad("resize_mode", f"must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}")
        return self

    def check_cams(self, shape: tuple[int, ...], source: str = "model") -> None:
        """The graph's CAMs for one input of `input_size` must be (B, classes, N, M) with N, M what the
        geometry chain gives: otherwise thresholds, boxes and class names would all be wrong."""
        chain = validate_chain(self.geometry)
        expected = (len(self.classes), *(cam_size(chain, v) for v in self.input_size))
        if len(shape) != 4:
            raise MetadataError(f"{source}: the graph outputs a {len(shape)}-D tensor {tuple(shape)}; spamcam models "
                                "output CAMs (batch, classes, height, width)")
        if shape[1] != expected[0]:
            raise MetadataError(f"{source}: the graph outputs {shape[1]} CAMs but metadata field 'classes' lists "
                                f"{expected[0]} ({self.classes}); re-export the model with `export-onnx`")
        if tuple(shape[2:]) != expected[1:]:
            raise MetadataError(f"{source}: the graph's CAMs are {shape[2]}x{shape[3]} for a {self.input_size[0]}x"
                                f"{self.input_size[1]} input, but metadata fields 'geometry'/'input_size' give "
                                f"{expected[1]}x{expected[2]}; re-export the model with `export-onnx`")

    @property
    def trained_on(self) -> dict[str, Any]:
        """The data the model was trained on, as export-onnx recorded it (TRAINED_ON_KEYS; absent keys
        are None): the default data of eval-cam and quantize-int8, so that an evaluation of an
        MNIST128 model draws the same splits (seed) from the same digits (mnist_dir) as training did,
        never training digits into its test split."""
        recorded = self.extra.get("trained_on") or {}
        return {key: recorded.get(key) for key in TRAINED_ON_KEYS}

    def with_box_settings(self, settings: BoxSettings) -> "ModelInfo":
        return replace(self, **settings.fields())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_onnx_metadata(model, info: ModelInfo) -> None:
    """Set (replace) spamcam's key in an onnx.ModelProto's metadata_props."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()


def load_onnx(path) -> Any:
    """An onnx.ModelProto from a file, with a clear error for what onnx would raise raw or accept
    silently: a missing file, an empty or truncated one (protobuf's DecodeError), or one with no graph."""
    import onnx
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such model file")
    if path.stat().st_size == 0:
        raise MetadataError(f"{path}: an empty file (0 bytes), not an ONNX model; was an export or copy interrupted?")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # google.protobuf's DecodeError and friends
        raise MetadataError(f"{path}: not a readable ONNX model: truncated or corrupt ({type(error).__name__}); "
                            "export it again with `export-onnx`") from error
    if not model.graph.node:
        raise MetadataError(f"{path}: an ONNX file with no graph; export it again with `export-onnx`")
    return model


def info_from_metadata(metadata: dict[str, str], source: str = "model") -> ModelInfo:
    """spamcam's metadata from an ONNX model's key/value metadata (however it was read: onnx or ONNX
    Runtime); MetadataError when it has none."""
    if METADATA_KEY not in metadata:
        raise MetadataError(f"{source}: an ONNX model without spamcam metadata (no '{METADATA_KEY}' key). Export it "
                            "with `export-onnx ckpt.pt`; a foreign model lacks the thresholds and geometry "
                            "localization needs.")
    return ModelInfo.from_json(metadata[METADATA_KEY], source)


def read_onnx_metadata(model, source: str = "model") -> ModelInfo:
    """spamcam's metadata from an onnx.ModelProto; MetadataError when it has none."""
    return info_from_metadata({prop.key: prop.value for prop in model.metadata_props}, source)
