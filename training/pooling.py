"""Global pooling of class activation maps: GMP, GAP and SPAM (paper §3.2, docs/method.md "Training graph").

The pooling decides how the image-level loss spreads its gradient over the CAM, and so what the CAM
learns to cover: GMP trains one discriminative pixel, GAP the whole map, SPAM a region around the max.
Each operation is a plain function first, then a thin module, then one front class that picks the
operation from a string (the timm pattern, see STYLE.md).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from runtime.errors import ConfigError
from runtime.scores import DEFAULT_SPAM_KERNELS, POOLINGS

__all__ = [
    "POOLING_MODES",
    "DEFAULT_SPAM_KERNELS",
    "KernelSpec",
    "parse_kernels",
    "global_max_pool",
    "global_avg_pool",
    "spam_pool",
    "GlobalCamPool",
]

POOLING_MODES = POOLINGS  # defined once, in runtime/ (a deployed model re-applies the same pooling)

KernelSpec = Union[int, str]


def parse_kernels(spec: str | Sequence[KernelSpec]) -> tuple[KernelSpec, ...]:
    """Accept "1,2,5,N" from a CLI or a list from a config, and refuse anything else by name."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    kernels: list[KernelSpec] = []
    for item in items:
        text = str(item).strip()
        if text.upper() == "N":
            kernels.append("N")
            continue
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"SPAM kernel {text!r} is neither a positive integer nor 'N'") from None
        if value < 1:
            raise ConfigError(f"SPAM kernel sizes must be >= 1, got {value}")
        kernels.append(value)
    if not kernels:
        raise ConfigError("SPAM needs at least one kernel size, e.g. '1,2,5,N'")
    return tuple(kernels)


def global_max_pool(cam: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): the gradient reaches only the maximum (Eq. 1)."""
    return cam.amax(dim=(-2, -1))


def global_avg_pool(cam: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): every pixel gets the same gradient (Eq. 2)."""
    return cam.mean(dim=(-2, -1))


def _window(kernel: KernelSpec, height: int, width: int) -> tuple[int, int]:
    # A kernel larger than the map is clamped to it, so "N" and any K >= N both mean the global mean.
    if kernel == "N":
        return height, width
    return min(int(kernel), height), min(int(kernel), width)


def spam_pool(cam: torch.Tensor, kernels: Sequence[KernelSpec] = DEFAULT_SPAM_KERNELS) -> torch.Tensor:
    """Spatial Pyramid Averaged Max: mean over steps p of max(avg_pool_{K_p}(cam)).

    avg_pool (stride 1, no padding) then max sends K_p^-2 of the gradient to every pixel of the window
    that won the max, and the mean over steps divides by P: exactly Eq. 3.
    """
    batch, classes, height, width = cam.shape
    steps = []
    for kernel in kernels:
        window = _window(kernel, height, width)
        pooled = F.avg_pool2d(cam, kernel_size=window, stride=1)  # (B, C, H-k+1, W-k+1)
        steps.append(pooled.amax(dim=(-2, -1)))  # (B, C)
    return torch.stack(steps, dim=0).mean(dim=0)


class GlobalCamPool(nn.Module):
    """Pools each class map to one scalar with the chosen mode; reports its kernels for export."""

    def __init__(self, mode: str = "spam", kernels: Sequence[KernelSpec] = DEFAULT_SPAM_KERNELS) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ConfigError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {mode!r}")
        self.mode = mode
        self.kernels = parse_kernels(kernels)

    def forward(self, cam: torch.Tensor) -> torch.Tensor:
        if self.mode == "gmp":
            return global_max_pool(cam)
        if self.mode == "gap":
            return global_avg_pool(cam)
        return spam_pool(cam, self.kernels)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", kernels={self.kernels}" if self.mode == "spam" else "")
