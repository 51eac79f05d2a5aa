"""The CUDA memory layer for the TensorRT backend: pinned host buffers, device buffers, a stream.

NVIDIA's current TensorRT samples use cuda-python (`cuda.bindings.runtime`); JetPack users often
have pycuda instead, so both are accepted, cuda-python first. Every cuda-python call goes through
one checker that raises with the error's name (the samples' `cuda_call`), and each resource is a
small class with `free()` and context-manager support (Polygraphy's pattern).

cuda-python's major version follows the CUDA major version its bindings were built for, and a
binding needs a driver of at least that CUDA version: cuda-python 13 needs an R580+ driver, which
JetPack 6 (CUDA 12.x, R36 driver) does not have. That is why the `gpu-cu12` / `gpu-cu13` extras pin
it by CUDA major, and why a cuda-python that the driver refuses falls back to pycuda, which is
compiled against the CUDA found on the device, before giving up with the driver requirement named.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from ..errors import DeviceError

__all__ = ["CudaApi", "load_cuda_api", "PinnedBuffer", "DeviceBuffer", "CudaError", "host_view"]


class CudaError(DeviceError):
    pass


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _cuda_python_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("cuda-bindings", "cuda-python"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def driver_requirement(cuda_python_version: str) -> str:
    """What driver a cuda-python release needs: its major version is the CUDA major it binds."""
    major = cuda_python_version.split(".")[0]
    if major == "13":
        return "cuda-python 13 needs a CUDA 13 driver, R580 or newer (JetPack 6's CUDA 12 driver is not)"
    if major == "12":
        return "cuda-python 12 needs a CUDA 12 driver, R525 or newer (JetPack 6 has one)"
    return f"cuda-python {cuda_python_version} needs a driver of its CUDA major version"


class CudaApi:
    """The handful of CUDA runtime calls the backend needs, over cuda-python or pycuda."""

    def __init__(self) -> None:
        self.flavour = None
        problems = []
        try:
            self.cudart = _import_cudart()
            self.flavour = "cuda-python"
            count = self._call(self.cudart.cudaGetDeviceCount())
            if count < 1:
                raise CudaError("no CUDA device found")
            return
        except ImportError as error:
            problems.append(f"cuda-python is not installed ({error})")
        except CudaError as error:  # often a driver older than the bindings: pycuda may still work
            problems.append(f"cuda-python {_cuda_python_version()} cannot use this GPU ({error}: "
                            f"{driver_requirement(_cuda_python_version())}; is the driver loaded? see nvidia-smi)")
        self.flavour = None
        try:
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as driver

            self.driver = driver
            self.flavour = "pycuda"
        except ImportError as error:
            problems.append(f"pycuda is not installed ({error})")
        except Exception as error:  # pycuda raises its own LogicError/RuntimeError when no device is usable
            problems.append(f"pycuda cannot use this GPU ({type(error).__name__}: {error})")
        if self.flavour is None:
            raise CudaError("no usable CUDA: " + "; ".join(problems) + ". Install the cuda-python of the driver's CUDA "
                            "major: `pip install 'spamcam[gpu-cu12]'` for CUDA 12 drivers and JetPack 6, "
                            "`'spamcam[gpu-cu13]'` for R580+ drivers; or use JetPack's pycuda")

    def _call(self, result: Any):
        """cuda-python returns (err, *values): raise on err, return the values."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.cudart.cudaGetErrorName(err)[1]
            raise CudaError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
        return values[0] if len(values) == 1 else (values or None)

    def device_description(self) -> dict[str, str]:
        if self.flavour == "cuda-python":
            props = self._call(self.cudart.cudaGetDeviceProperties(0))
            name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
            return {"gpu": name, "compute_capability": f"{props.major}.{props.minor}"}
        device = self.driver.Device(0)
        major, minor = device.compute_capability()
        return {"gpu": device.name(), "compute_capability": f"{major}.{minor}"}

    def stream(self):
        if self.flavour == "cuda-python":
            return self._call(self.cudart.cudaStreamCreate())
        return self.driver.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream) if self.flavour == "cuda-python" else stream.handle

    def synchronize(self, stream) -> None:
        if self.flavour == "cuda-python":
            self._call(self.cudart.cudaStreamSynchronize(stream))
        else:
            stream.synchronize()

    def destroy_stream(self, stream) -> None:
        if self.flavour == "cuda-python":
            self._call(self.cudart.cudaStreamDestroy(stream))


def host_view(pointer: int, count: int, dtype: np.dtype) -> np.ndarray:
    """`count` elements of `dtype` at a raw host address, as a numpy array that shares the memory.

    Wrapped as bytes, then viewed as the dtype, as NVIDIA's samples do: ctypes has no float16 (or
    bfloat16) type, so `np.ctypeslib.as_ctypes_type(float16)` raises, and an FP16-I/O engine would fail."""
    dtype = np.dtype(dtype)
    nbytes = int(count) * dtype.itemsize
    raw = np.ctypeslib.as_array(ctypes.cast(int(pointer), ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
    return raw.view(dtype)


class PinnedBuffer:
    """Page-locked host memory as a numpy array, for fast asynchronous copies."""

    def __init__(self, api: CudaApi, count: int, dtype: np.dtype) -> None:
        self.api, self.dtype = api, np.dtype(dtype)
        self.nbytes = int(count) * self.dtype.itemsize
        if api.flavour == "cuda-python":
            self._pointer = api._call(api.cudart.cudaMallocHost(self.nbytes))
            self.array = host_view(self._pointer, int(count), self.dtype)
        else:
            self.array = api.driver.pagelocked_empty(int(count), self.dtype)

    def free(self) -> None:
        if self.array is not None and self.api.flavour == "cuda-python":
            self.api._call(self.api.cudart.cudaFreeHost(self._pointer))
        self.array = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.free()


class DeviceBuffer:
    """Device memory; copies to and from it are bounds-checked against its size."""

    def __init__(self, api: CudaApi, nbytes: int) -> None:
        self.api, self.nbytes = api, int(nbytes)
        if api.flavour == "cuda-python":
            self.pointer = int(api._call(api.cudart.cudaMalloc(self.nbytes)))
            self._allocation = None
        else:
            self._allocation = api.driver.mem_alloc(self.nbytes)
            self.pointer = int(self._allocation)

    def upload(self, host: np.ndarray, stream) -> None:
        if host.nbytes > self.nbytes:
            raise ValueError(f"copy of {host.nbytes} bytes into a {self.nbytes}-byte device buffer")
        if self.api.flavour == "cuda-python":
            kind = self.api.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self.api._call(self.api.cudart.cudaMemcpyAsync(self.pointer, host.ctypes.data, host.nbytes, kind, stream))
        else:
            self.api.driver.memcpy_htod_async(self._allocation, host, stream)

    def download(self, host: np.ndarray, stream) -> None:
        if host.nbytes > self.nbytes:
            raise ValueError(f"copy of {host.nbytes} bytes out of a {self.nbytes}-byte device buffer")
        if self.api.flavour == "cuda-python":
            kind = self.api.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self.api._call(self.api.cudart.cudaMemcpyAsync(host.ctypes.data, self.pointer, host.nbytes, kind, stream))
        else:
            self.api.driver.memcpy_dtoh_async(host, self._allocation, stream)

    def free(self) -> None:
        if self.pointer and self.api.flavour == "cuda-python":
            self.api._call(self.api.cudart.cudaFree(self.pointer))
        elif self._allocation is not None:
            self._allocation.free()
        self.pointer, self._allocation = 0, None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.free()


def load_cuda_api() -> CudaApi:
    return CudaApi()
