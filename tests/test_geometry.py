"""The traced (k, s, p) chain against the empirical receptive field of every backbone."""
import pytest
import torch
from torch import nn

from runtime.geometry import chain_affine, receptive_field
from training.backbones import BACKBONES, build_backbone
from training.geometry import GeometryError, empirical_receptive_field, extract_chain

# Inputs large enough that the centre pixel's field is not clipped for the smaller nets.
SIZES = {"lenet": 128, "lenet_s4": 128, "vgg16": 224, "resnet18": 512, "resnet50": 512, "mobilenet_v3_large": 640}


def _chain_box(chain, pixel, size):
    x0, x1 = receptive_field(chain, pixel[1])
    y0, y1 = receptive_field(chain, pixel[0])
    return max(x0, 0), max(y0, 0), min(x1, size - 1), min(y1, size - 1)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_chain_equals_empirical_receptive_field(name):
    features, _ = build_backbone(name)
    chain = extract_chain(features)
    size = SIZES[name]
    channels = BACKBONES[name].native_channels
    with torch.no_grad():
        rows, cols = features.eval()(torch.zeros(1, channels, size, size)).shape[-2:]
    for pixel in [(rows // 2, cols // 2), (0, 1), (rows - 1, cols - 2)]:
        assert empirical_receptive_field(features, (size, size), pixel, channels) == _chain_box(chain, pixel, size)


def test_known_chains():
    lenet, _ = build_backbone("lenet")
    assert extract_chain(lenet) == ((5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0), (5, 1, 0))
    assert chain_affine(extract_chain(lenet)) == (4, 0, 31)  # stride 4, field 32 px
    short, _ = build_backbone("lenet_s4")
    assert chain_affine(extract_chain(short)) == (4, 0, 15)  # without C5: field 16 px
    vgg, _ = build_backbone("vgg16")
    stride, low, high = chain_affine(extract_chain(vgg))
    assert (stride, high - low + 1) == (32, 212)  # VGG-16 pool5: the textbook 212 px field


def test_resnet_chain_follows_residual_branch():
    """The shortcut (1x1, stride 2) lies inside the residual branch's field, so the chain takes the
    residual convolutions: 3 convs per stage transition, never the 1x1 downsample."""
    resnet, _ = build_backbone("resnet18")
    chain = extract_chain(resnet)
    assert (1, 2, 0) not in chain
    assert sum(1 for layer in chain if layer == (3, 2, 1)) == 4  # maxpool + 3 strided residual convs


class _Unbounded(nn.Module):
    """Two branches whose fields are shifted: no branch contains the other."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=0)
        self.b = nn.Conv2d(1, 1, 3, padding=2)  # field [x-2, x] vs a: [x, x+2]

    def forward(self, x):
        return self.a(x)[..., :4, :4] + self.b(x)[..., :4, :4]


def test_unbounded_merge_is_refused():
    with pytest.raises(GeometryError, match="contains the others"):
        extract_chain(_Unbounded())
