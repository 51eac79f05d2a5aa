"""The CAM network: backbone -> 1x1 CAM conv (one map per class) -> global pooling -> per-class
two-way softmax (paper Fig. 3; docs/method.md "Training graph").

The network takes images in [0, 1] and normalises them itself, so the exported graph carries its
normalisation and no runtime can forget it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .backbones import BACKBONES, build_backbone
from .geometry import extract_chain
from .pooling import DEFAULT_SPAM_KERNELS, POOLING_MODES, GlobalCamPool, parse_kernels
from runtime.errors import ConfigError, ModelError

__all__ = ["ModelConfig", "CamNet", "build_model"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "lenet"  # the paper's MNIST128 model; vgg16 is its VOC model
    classes: list[str] = field(default_factory=lambda: ["3"])  # one two-way softmax per class
    pooling: str = "spam"  # the paper's contribution; gmp/gap are its baselines
    spam_kernels: list[Any] = field(default_factory=lambda: list(DEFAULT_SPAM_KERNELS))  # paper §4.1
    input_size: list[int] = field(default_factory=lambda: [128, 128])  # (H, W) the model is trained at
    in_channels: int = 1  # 1 for MNIST-like grey data; torchvision backbones take 3
    mean: list[float] = field(default_factory=lambda: [0.0])  # folded into the graph; [0,1] input
    std: list[float] = field(default_factory=lambda: [1.0])
    geometry: list[list[int]] = field(default_factory=list)  # (k, s, p) input -> CAM, filled by build_model
    ratio: float = 0.0  # Algorithm 1's r; tuned on validation data (train-cam, eval-cam --tune)
    ratio_y: float | None = None  # r for heights where validation prefers its own; None: `ratio` (the paper's)
    flood_floor: float = 0.0  # mountains stop at activations <= this (docs/method.md: "activated" pixels)
    relative_floor: float = 0.0  # ... and at this share of their own peak; 0 is the paper's (tuned like r)
    projection: str = "theoretical"  # what a CAM pixel is projected onto (runtime/geometry.py; tuned like r)
    confidence_peak_scales: list[float] | None = None  # box confidence's peak form; None: instance (chosen like r)
    confidence_peak_offsets: list[float] | None = None  # ... and its per-class intercepts; None: zeros
    pretrained: str = "none"
    output_stride: int | None = None  # the CAM's stride; None: the backbone's own (training/backbones.py)

    def validate(self) -> "ModelConfig":
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.pooling not in POOLING_MODES:
            raise ConfigError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes must be a non-empty list of distinct names, got {self.classes!r}")
        if len(self.input_size) != 2 or min(self.input_size) < 16:
            raise ConfigError(f"input_size must be [height, width] of at least 16 px, got {self.input_size!r}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(f"mean/std need {self.in_channels} values (one per input channel)")
        self.spam_kernels = list(parse_kernels(self.spam_kernels))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields {unknown}; was this written by a newer spamcam?")
        return cls(**data).validate()


class CamNet(nn.Module):
    def __init__(self, config: ModelConfig, features: nn.Module, feature_channels: int) -> None:
        super().__init__()
        self.config = config
        num_classes = len(config.classes)
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1))
        self.features = features
        self.cam_head = nn.Conv2d(feature_channels, num_classes, kernel_size=1)
        self.pool = GlobalCamPool(config.pooling, config.spam_kernels)
        # Per class: two outputs (absent, present) from the pooled scalar, i.e. a (C, 2) affine map.
        self.out_weight = nn.Parameter(torch.tensor([[-1.0, 1.0]]).repeat(num_classes, 1) * 0.5)
        self.out_bias = nn.Parameter(torch.zeros(num_classes, 2))

    def output_layer_parameters(self) -> list[nn.Parameter]:
        """The per-class two-way affine after the pooling: 2 x 2 numbers per class that calibrate the
        pooled score, not features; the trainer gives them their own learning rate and no weight decay."""
        return [self.out_weight, self.out_bias]

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [0, 1] -> CAMs (B, C, N, M): the inference graph."""
        feats = self.features((images - self.mean) / self.std)  # (B, F, N, M)
        return self.cam_head(feats)  # (B, C, N, M)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        cam = self.cam(images)
        pooled = self.pool(cam)  # (B, C)
        logits = pooled.unsqueeze(-1) * self.out_weight + self.out_bias  # (B, C, 2)
        return {"logits": logits, "pooled": pooled, "cam": cam}

    def output_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_c, b_c) with P(present) = sigmoid(a_c * s_c + b_c)."""
        a = self.out_weight[:, 1] - self.out_weight[:, 0]
        b = self.out_bias[:, 1] - self.out_bias[:, 0]
        return a.detach(), b.detach()

    def thresholds(self) -> list[float | None]:
        """t_c = -b_c / a_c, the pooled value where P(present) = 0.5; None where a_c <= 0 (reported)."""
        a, b = self.output_affine()
        return [(-float(bi) / float(ai)) if float(ai) > 0 else None for ai, bi in zip(a, b)]


def build_model(
    config: ModelConfig, *, weights_path: str | None = None, pretrained: str | None = None
) -> CamNet:
    config.validate()
    features, channels = build_backbone(
        config.backbone,
        in_channels=config.in_channels,
        pretrained=pretrained if pretrained is not None else config.pretrained,
        weights_path=weights_path,
        output_stride=config.output_stride,
    )
    chain = extract_chain(features) + ((1, 1, 0),)  # the 1x1 CAM conv closes the chain
    if config.geometry and [list(l) for l in chain] != [list(l) for l in config.geometry]:
        raise ModelError(f"stored geometry {config.geometry} differs from the model's {list(chain)}")
    config.geometry = [list(layer) for layer in chain]
    return CamNet(config, features, channels)


def default_normalisation(backbone: str, in_channels: int) -> tuple[list[float], list[float]]:
    """ImageNet statistics for torchvision backbones (their weights expect them); identity for LeNet."""
    if backbone.startswith("lenet"):
        return [0.0] * in_channels, [1.0] * in_channels
    return list(IMAGENET_MEAN), list(IMAGENET_STD)
