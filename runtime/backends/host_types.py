"""How an engine's input and output tensors are held on the host, whatever their TensorRT type.

`trt.nptype` maps most TensorRT types to numpy, but raises for BF16 (numpy has no bfloat16). BF16
tensors are therefore kept as their 16-bit patterns (uint16) and converted to and from float32
here, so an engine built with BF16 I/O runs like any other: the backend always takes and returns
float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HostType", "host_type", "BFLOAT16", "bfloat16_bits", "float32_from_bfloat16_bits"]


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even as CUDA's __float2bfloat16
    does; NaN stays NaN (a quiet NaN), where plain rounding could carry it into infinity."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    return np.where(nan, np.uint16(0x7FC0) | ((bits >> np.uint32(16)) & np.uint32(0x8000)).astype(np.uint16), rounded)


def float32_from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly (bfloat16 is float32's upper half)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


@dataclass(frozen=True)
class HostType:
    """The numpy dtype a host buffer holds for one TensorRT tensor type, and the float32 conversions."""

    name: str
    storage: np.dtype

    def encode(self, batch: np.ndarray) -> np.ndarray:
        if self.name == "bfloat16":
            return bfloat16_bits(batch)
        return np.ascontiguousarray(batch, dtype=self.storage)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        if self.name == "bfloat16":
            return float32_from_bfloat16_bits(stored)
        return stored.astype(np.float32)


BFLOAT16 = HostType("bfloat16", np.dtype(np.uint16))


def host_type(trt, trt_dtype) -> HostType:
    """The HostType for a TensorRT DataType (`trt` is the imported tensorrt module)."""
    if trt_dtype == getattr(trt.DataType, "BF16", object()):
        return BFLOAT16
    try:
        storage = np.dtype(trt.nptype(trt_dtype))
    except TypeError as error:  # FP8, INT4, ...: no numpy type, and no float conversion we can vouch for
        raise ValueError(f"engine I/O of TensorRT type {trt_dtype} has no host representation here; build the engine "
                         "with float32, float16 or bfloat16 inputs and outputs") from error
    return HostType(storage.name, storage)
