"""Fast back-projection (paper Algorithm 1): a CAM pixel's receptive field without a backward pass.

A chain is the ordered list of (kernel, stride, padding) from the network input to the CAM; the
walk goes from the CAM down to the input, so it is read in reverse. Because every step is affine,
the whole chain folds into `x0 = x*S + A, x1 = x*S + B`, which is how the arrays below are computed
in one vectorised step per frame.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

__all__ = ["Chain", "validate_chain", "receptive_field", "chain_affine", "backproject", "apply_ratio", "rf_centre",
           "cam_size", "PROJECTIONS", "projected_affine", "projected_centres"]

# How a class map becomes regions of the input (docs/method.md, "Projection"):
# - theoretical: each mountain pixel's whole receptive field, the paper's Algorithm 1;
# - interpolated: the map resized bilinearly onto the input with each pixel at the centre of its stride
#   tile, and each mountain's region the part around its peak above the mountain's floor. A padded
#   backbone's tile is [x*S, x*S + S - 1] (as WSOL work stretches a CAM over its image; where its pixels
#   were measured to respond); an unpadded network's (LeNet) is centred on the pixel's field, which
#   lies inside the input (at [x*S, x*S + S - 1] LeNet's boxes sat 14 px off their objects).
PROJECTIONS = ("theoretical", "interpolated")

Chain = tuple[tuple[int, int, int], ...]


def validate_chain(chain: Sequence[Sequence[int]]) -> Chain:
    """Normalise a chain read from a checkpoint or ONNX metadata, refusing malformed layers."""
    layers = []
    for index, layer in enumerate(chain):
        if len(layer) != 3:
            raise ValueError(f"geometry layer {index} is {layer!r}; expected [kernel, stride, padding]")
        kernel, stride, padding = (int(v) for v in layer)
        if kernel < 1 or stride < 1 or padding < 0:
            raise ValueError(f"geometry layer {index} = {layer!r} has a non-positive kernel/stride or negative padding")
        layers.append((kernel, stride, padding))
    return tuple(layers)


def cam_size(chain: Chain, length: int) -> int:
    """How many CAM pixels an input of `length` pixels gives along one axis (floor convolution arithmetic)."""
    for kernel, stride, padding in chain:
        length = (length + 2 * padding - kernel) // stride + 1
    return length


def receptive_field(chain: Chain, x: int) -> tuple[int, int]:
    """Algorithm 1, lines 2-6, literally: inclusive input interval [x0, x1] of CAM pixel x."""
    x0 = x1 = x
    for kernel, stride, padding in reversed(chain):
        x0 = x0 * stride - padding
        x1 = x1 * stride - padding + kernel - 1
    return x0, x1


def chain_affine(chain: Chain) -> tuple[int, int, int]:
    """(S, A, B) with receptive_field(chain, x) == (x*S + A, x*S + B) for every x."""
    a0, a1 = receptive_field(chain, 0)
    b0, _ = receptive_field(chain, 1)
    return b0 - a0, a0, a1


def backproject(chain: Chain, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Algorithm 1 for an array of CAM coordinates: inclusive (lo, hi) input coordinates."""
    stride, low, high = chain_affine(chain)
    coords = np.asarray(coords, dtype=np.int64)
    return coords * stride + low, coords * stride + high


def apply_ratio(lo: np.ndarray, hi: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric resize by r (docs/method.md, "Inference" 3): r > 0 shrinks, r < 0 grows; w = hi - lo before."""
    if ratio == 0:
        return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    width = np.asarray(hi, dtype=np.float64) - lo
    return lo + width * ratio / 2.0, hi - width * ratio / 2.0


def rf_centre(chain: Chain, x: float | np.ndarray) -> np.ndarray:
    """Centre of a CAM pixel's receptive field in input pixel coordinates (pin-pointing's point)."""
    stride, low, high = chain_affine(chain)
    return np.asarray(x, dtype=np.float64) * stride + (low + high) / 2.0


@functools.lru_cache(maxsize=64)
def projected_affine(chain: Chain, projection: str = "theoretical") -> tuple[int, int, int]:
    """(S, A, B) with CAM pixel x standing for the inclusive input interval [x*S + A, x*S + B]: its
    receptive field (Algorithm 1), or for "interpolated" its stride tile: for a padded network
    [x*S, x*S + S - 1], the convention of the WSOL work that stretches a CAM over its image and where a
    padded deep backbone's pixels were measured to respond (docs/results.md, "Boxes from deep
    backbones"); for an unpadded one (every field inside the input, A >= 0) the tile centred on the
    field, so that the map is laid where its pixels look."""
    stride, low, high = chain_affine(chain)
    if projection == "theoretical":
        return stride, low, high
    if projection == "interpolated":
        start = int(np.floor((low + high) / 2 - (stride - 1) / 2)) if low >= 0 else 0  # unpadded: on the field
        return stride, start, start + stride - 1
    raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")


def projected_centres(affine: tuple[int, float, float], x: np.ndarray) -> np.ndarray:
    """Centres of CAM pixels x's projected fields (`projected_affine`) in pixel-edge coordinates (pixel i
    spans [i, i+1)): where a pixel points, for pin-pointing and for which cells make up a box."""
    stride, low, high = affine
    return np.asarray(x, dtype=np.float64) * stride + (low + high) / 2.0 + 0.5
