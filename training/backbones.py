"""Convolutional backbones without their fully connected layers (paper §3, §4.1, §4.2).

Everything but LeNet comes from torchvision's own definitions, so ImageNet weights load unchanged.
One table describes every backbone (STYLE.md: generate builders from a table, don't copy them).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from runtime.errors import ConfigError, DeviceError, NotFoundError

__all__ = ["BACKBONES", "BackboneSpec", "build_backbone", "lenet5_features", "OUTPUT_STRIDES", "native_stride"]

# The CAM's stride: a deep backbone's own (32), or 16 with its last downsampling removed, as
# wsolevaluation does for its ResNet50 and VGG16 ("large feature map", Choe et al. 2020): twice the
# CAM resolution, the same weights. docs/method.md, "Projection", says when it pays.
OUTPUT_STRIDES = (16, 32)


def lenet5_features(in_channels: int = 1, *, with_c5: bool = True) -> nn.Sequential:
    """LeNet-5's convolutions, ReLU after each: C1 6@5x5, S2 max-pool 2, C3 16@5x5, S4 max-pool 2 and,
    by default, C5 120@5x5 (a convolution in LeNet-5; F6 and the output layer are the fully
    connected layers the paper removes).

    With C5 the receptive field is 32 px (stride 4): one CAM pixel sees a whole 28 px MNIST digit.
    Without it (`lenet_s4`) the field is 16 px and a box's extent must come from the activated
    mountain alone; docs/results.md compares both.
    """
    layers = [
        nn.Conv2d(in_channels, 6, kernel_size=5),  # C1
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),  # S2
        nn.Conv2d(6, 16, kernel_size=5),  # C3
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),  # S4
    ]
    if with_c5:
        layers += [nn.Conv2d(16, 120, kernel_size=5), nn.ReLU(inplace=True)]  # C5
    return nn.Sequential(*layers)


def _torchvision_features(name: str, weights: str | None) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, name)
    weight_enum = None
    if weights == "imagenet":
        weight_enum = torchvision.models.get_model_weights(name).DEFAULT
    try:
        model = builder(weights=weight_enum)
    except (OSError, RuntimeError, ValueError) as error:  # urllib's URLError is an OSError
        raise DeviceError(
            f"could not obtain ImageNet weights for {name} ({error}). This machine may be offline: "
            f"download them elsewhere (torchvision.models.{name}(weights='DEFAULT').state_dict(), "
            f"saved with torch.save) and pass --weights PATH, or train from scratch with --pretrained none."
        ) from error
    if name.startswith("resnet"):
        return nn.Sequential(
            model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
        )
    return model.features  # vgg16, mobilenet_v3_large: the classifier is the FC part


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[[int, str | None], nn.Module]
    native_channels: int  # input channels the architecture (and its ImageNet weights) expects
    note: str


BACKBONES: dict[str, BackboneSpec] = {
    "lenet": BackboneSpec(lambda c, w: lenet5_features(c), 1, "LeNet-5 C1-C5 (paper's MNIST128 model)"),
    "lenet_s4": BackboneSpec(lambda c, w: lenet5_features(c, with_c5=False), 1, "LeNet-5 C1-S4, 16 px field"),
    "vgg16": BackboneSpec(lambda c, w: _torchvision_features("vgg16", w), 3, "paper's VOC model"),
    "resnet18": BackboneSpec(lambda c, w: _torchvision_features("resnet18", w), 3, ""),
    "resnet50": BackboneSpec(lambda c, w: _torchvision_features("resnet50", w), 3, ""),
    "mobilenet_v3_large": BackboneSpec(
        lambda c, w: _torchvision_features("mobilenet_v3_large", w), 3, "for edge devices"
    ),
}


def native_stride(name: str) -> int:
    """The CAM stride of a backbone as torchvision defines it (LeNet: 4)."""
    return 4 if name.startswith("lenet") else 32


def _drop_last_downsampling(name: str, features: nn.Module) -> nn.Module:
    """The same network with its last stride-2 step made stride 1 (weights unchanged): ResNet's layer4
    block and its shortcut, MobileNetV3's last strided depthwise convolution, VGG's last max-pool."""
    if name == "vgg16":
        return nn.Sequential(*list(features)[:-1])  # features ends with its fifth max-pool
    if name.startswith("resnet"):
        strided = [m for m in features[7][0].modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    else:
        strided = [m for m in features.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)][-1:]
    for module in strided:
        module.stride = (1, 1)
    return features


def build_backbone(
    name: str, *, in_channels: int | None = None, pretrained: str | None = None, weights_path: str | Path | None = None,
    output_stride: int | None = None,
) -> tuple[nn.Module, int]:
    """Return (feature extractor, number of output channels).

    pretrained: None or "imagenet" (needs the network or torch's cache); weights_path: a local
    state_dict of the full torchvision model or of the feature extractor; output_stride: None (the
    backbone's own) or one of OUTPUT_STRIDES.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if pretrained not in (None, "none", "imagenet"):
        raise ConfigError(f"pretrained must be 'none' or 'imagenet', got {pretrained!r}")
    if pretrained == "imagenet" and weights_path is not None:
        raise ConfigError("give either --pretrained imagenet or --weights PATH, not both")
    if pretrained == "imagenet" and name.startswith("lenet"):
        raise ConfigError("there are no ImageNet weights for lenet; use --pretrained none")
    if output_stride is not None and output_stride != native_stride(name):
        if name.startswith("lenet") or output_stride not in OUTPUT_STRIDES:
            raise ConfigError(f"{name} has CAM stride {native_stride(name)}; --output-stride 16 is for the deep "
                              f"backbones "
                              f"({', '.join(n for n in BACKBONES if not n.startswith('lenet'))})")
    spec = BACKBONES[name]
    in_channels = spec.native_channels if in_channels is None else in_channels
    if not name.startswith("lenet") and in_channels != 3:
        raise ConfigError(f"{name} takes 3-channel input (grey images are repeated to RGB), got {in_channels}")
    features = spec.build(in_channels, None if pretrained == "none" else pretrained)
    if weights_path is not None:
        _load_local_weights(features, Path(weights_path), name)
    if output_stride is not None and output_stride != native_stride(name):
        features = _drop_last_downsampling(name, features)
    with torch.no_grad():
        probe = torch.zeros(1, in_channels, 224, 224)
        was_training = features.training
        features.eval()
        channels = features(probe).shape[1]
        features.train(was_training)
    return features, int(channels)


def _load_local_weights(features: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise NotFoundError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"--weights {path} is not a readable state_dict ({error})") from error
    if not isinstance(state, dict):
        raise ConfigError(f"--weights {path} holds a {type(state).__name__}, expected a state_dict")
    own = features.state_dict()
    # Accept the full torchvision model's keys ("features.0.weight", "layer1.0.conv1.weight", ...).
    remapped = {}
    for key, value in state.items():
        for candidate in (key, key.removeprefix("features."), _resnet_key(key)):
            if candidate in own:
                remapped[candidate] = value
                break
    missing = sorted(set(own) - set(remapped))
    if missing:
        raise ConfigError(
            f"--weights {path} does not fit {name}: {len(missing)} tensors missing (first: {missing[0]})"
        )
    features.load_state_dict(remapped)


_RESNET_STEMS = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def _resnet_key(key: str) -> str:
    head, _, rest = key.partition(".")
    return f"{_RESNET_STEMS[head]}.{rest}" if head in _RESNET_STEMS else key
