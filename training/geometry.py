"""Receptive-field geometry: the ordered (kernel, stride, padding) chain from the input to the CAM.

Algorithm 1 (fast back-projection) needs one (k, s, p) per layer. Writing a table per backbone
drifts from the code, so the chain is read off the model itself by tracing it with torch.fx.

Branching backbones: where branches merge (ResNet's `x + shortcut(x)`), the chain follows the
branch with the widest field (the residual convolutions, never the 1x1 / identity shortcut). The
true field of a sum is the union of its branches' fields; both branches have the same total
stride (they must, to be added) and the shortcut's window lies inside the main path's window, so
the main path's field *is* that union: the chain bounds the true field exactly. This is checked at
every merge, and a merge where no branch contains the others is refused rather than guessed.

Global gates (MobileNetV3's squeeze-excitation multiplies features by a per-channel scale computed
from a global average) carry no spatial information; the chain follows the gated features. The
empirical check below therefore detaches global pooling outputs, and says so.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from runtime.geometry import Chain, receptive_field
from runtime.errors import ModelError

__all__ = ["extract_chain", "empirical_receptive_field", "GeometryError"]

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU)


class GeometryError(ModelError):
    """The model contains something whose receptive field the chain cannot describe."""


@dataclass(frozen=True)
class _Field:
    chain: Chain  # layers from the input to this tensor
    is_global: bool = False  # spatially constant (after a global pooling)


def _pair(value, what: str, module: nn.Module) -> int:
    if isinstance(value, str):
        raise GeometryError(f"{module}: string padding {value!r} is not supported; give explicit numbers")
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise GeometryError(f"{module}: non-square {what} {tuple(value)} is not supported")
        return int(value[0])
    return int(value)


def _layer_of(module: nn.Module) -> tuple[int, int, int]:
    kernel = _pair(module.kernel_size, "kernel", module)
    stride = _pair(module.stride, "stride", module)
    padding = _pair(module.padding, "padding", module)
    dilation = _pair(getattr(module, "dilation", 1), "dilation", module)
    if getattr(module, "ceil_mode", False):
        raise GeometryError(f"{module}: ceil_mode pooling shifts the last window; not supported")
    return dilation * (kernel - 1) + 1, stride, padding


def _merge(fields: list[_Field], node: fx.Node) -> _Field:
    spatial = [f for f in fields if not f.is_global]
    if not spatial:
        return _Field((), is_global=True)
    # Widest field at the CAM's pixel 0 and 1 (both, to compare strides as well as extents).
    def span(field: _Field, x: int) -> tuple[int, int]:
        return receptive_field(field.chain, x)

    widest = max(spatial, key=lambda f: span(f, 0)[1] - span(f, 0)[0])
    for other in spatial:
        for x in (0, 1):
            lo, hi = span(widest, x)
            olo, ohi = span(other, x)
            if not (lo <= olo and ohi <= hi):
                raise GeometryError(
                    f"at {node.name}: no branch's receptive field contains the others' "
                    f"({widest.chain} vs {other.chain}); the chain would not bound the true field"
                )
    return widest


def extract_chain(model: nn.Module) -> Chain:
    """Trace `model` (input -> feature map) and return its (k, s, p) chain, input first."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as error:
        raise GeometryError(f"cannot trace {type(model).__name__} with torch.fx: {error}") from error
    modules = dict(graph.named_modules())
    fields: dict[str, _Field] = {}
    result: _Field | None = None
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            fields[node.name] = _Field(())
            continue
        parents = [fields[a.name] for a in node.all_input_nodes if a.name in fields]
        if node.op == "output":
            result = parents[0]
            break
        if not parents:  # constants, attributes
            continue
        field = parents[0] if len(parents) == 1 else _merge(parents, node)
        if node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, _GLOBAL):
                field = _Field((), is_global=True)
            elif isinstance(module, _SPATIAL):
                field = _Field(field.chain + (_layer_of(module),), field.is_global)
        elif node.op == "call_function" and getattr(node.target, "__name__", "") in (
            "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"
        ):
            raise GeometryError(f"functional {node.target.__name__} at {node.name}: use the nn.Module form")
        fields[node.name] = field
    if result is None or result.is_global:
        raise GeometryError("the model's output has no spatial receptive field")
    return result.chain


def _linearised(model: nn.Module) -> nn.Module:
    """Same geometry, no data-dependent gradient gaps: max-pool becomes avg-pool (every input of
    the window gets gradient), activations become identity (no dead ReLUs), global gates become
    constants (the chain describes the spatial path; see the module docstring)."""
    clone = copy.deepcopy(model).eval()
    for name, module in list(clone.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            elif isinstance(child, _ACTIVATIONS):
                setattr(module, child_name, nn.Identity())
            elif isinstance(child, _GLOBAL):
                # A constant gate: no gradient through the global branch, and no squaring of
                # magnitudes at every squeeze-excitation block (scale * input).
                child.register_forward_hook(lambda _m, _i, out: torch.ones_like(out))
    return clone


def empirical_receptive_field(
    model: nn.Module, input_size: tuple[int, int], pixel: tuple[int, int], in_channels: int = 3, seed: int = 0
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of the input pixels whose gradient of one output pixel is non-zero.

    Measured on a linearised copy with random weights (see `_linearised`), so that the support is the
    architecture's field rather than what one input happened to activate.
    """
    generator = torch.Generator().manual_seed(seed)
    net = _linearised(model)
    net = net.double()
    with torch.no_grad():
        # Positive weights and inputs: no two paths can cancel. Dividing by the fan-in keeps
        # activations O(1) through 50 layers, so nothing overflows into inf/NaN.
        for parameter in net.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_((torch.rand(parameter.shape, generator=generator, dtype=torch.float64) + 0.5) / fan_in)
    image = torch.rand(1, in_channels, *input_size, generator=generator, dtype=torch.float64, requires_grad=True)
    out = net(image)
    row, col = pixel
    out[0, :, row, col].sum().backward()
    if not torch.isfinite(image.grad).all():
        raise GeometryError("the gradient overflowed while measuring the receptive field")
    support = image.grad.abs().sum(dim=(0, 1)) > 0  # (H, W)
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())
