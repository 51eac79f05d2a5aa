"""The host side of the TensorRT path that runs without a GPU: how engine I/O is held in host
memory (FP16 and BF16 included), engine file names and DLA's static profile. The GPU side is in
test_gpu.py and skips where no GPU is."""
import ctypes

import numpy as np
import pytest
import torch

from engines.tensorrt_engine import _static_profile_for_dla, default_engine_path
from runtime.backends.cuda_memory import host_view
from runtime.backends.host_types import BFLOAT16, HostType, bfloat16_bits, float32_from_bfloat16_bits
from runtime.model_info import ModelInfo


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int8, np.uint8, np.int64])
def test_host_view_wraps_raw_memory_of_any_dtype(dtype):
    """cudaMallocHost returns a bare address; any host address does for the view (here ctypes')."""
    memory = ctypes.create_string_buffer(64 * np.dtype(dtype).itemsize)
    view = host_view(ctypes.addressof(memory), 64, dtype)
    assert view.dtype == np.dtype(dtype) and view.shape == (64,)
    view[:] = np.arange(64).astype(dtype)
    again = host_view(ctypes.addressof(memory), 64, dtype)  # the same memory, not a copy
    np.testing.assert_array_equal(again, np.arange(64).astype(dtype))


def test_bfloat16_conversion_matches_pytorch():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 10, 10000), rng.normal(0, 1e-30, 100), [0.0, -0.0, 1.0, 3.0e38, -3.4e38,
                                                                                  np.inf, -np.inf]]).astype(np.float32)
    ours = bfloat16_bits(values)
    reference = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(float32_from_bfloat16_bits(ours),
                                  torch.from_numpy(reference.view(np.int16)).view(torch.bfloat16).float().numpy())
    assert np.isnan(float32_from_bfloat16_bits(bfloat16_bits(np.array([np.nan], np.float32)))).all()


def test_host_types_encode_to_their_storage_and_decode_to_float32():
    batch = np.random.default_rng(1).random((2, 1, 8, 8)).astype(np.float32)
    half = HostType("float16", np.dtype(np.float16))
    assert half.encode(batch).dtype == np.float16 and half.decode(half.encode(batch)).dtype == np.float32
    np.testing.assert_allclose(half.decode(half.encode(batch)), batch, atol=1e-3)
    stored = BFLOAT16.encode(batch)
    assert stored.dtype == BFLOAT16.storage == np.uint16
    np.testing.assert_allclose(BFLOAT16.decode(stored), batch, rtol=1 / 128)


@pytest.mark.parametrize("name, precision, expected", [("model.onnx", "fp16", "model.fp16.engine"),
                                                       ("model.int8.onnx", "int8", "model.int8.engine"),
                                                       ("model.int8.onnx", "fp16", "model.int8.fp16.engine"),
                                                       ("spam.fp32.onnx", "fp32", "spam.fp32.engine")])
def test_default_engine_names_do_not_repeat_the_precision(tmp_path, name, precision, expected):
    assert default_engine_path(tmp_path / name, precision) == tmp_path / expected


def test_dla_gets_a_static_profile(capsys):
    info = ModelInfo(classes=["3"], thresholds=[0.0], slopes=[1.0], intercepts=[0.0], pooling="spam", spam_kernels=[1],
                     geometry=[], input_size=[128, 96], in_channels=1)
    assert _static_profile_for_dla((1, 1, 1), None, None, info) == ((1, 1, 1), None, None)
    assert capsys.readouterr().err == ""  # already static: nothing to say
    assert _static_profile_for_dla((1, 4, 8), (64, 64), (256, 256), info) == ((4, 4, 4), None, None)
    assert "static shape; building for batch 4 at 128x96" in capsys.readouterr().err


def test_cuda_bindings_without_a_usable_driver_fall_back_and_name_the_driver_they_need():
    """Here cuda-python is installed (torch's CUDA build brings cuda-bindings) but no NVIDIA driver is:
    the same failure a JetPack 6 device meets with cuda-python 13. The loader must go on to pycuda and
    then say which driver the installed bindings need, not re-raise the bare CUDA error."""
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed here")
    from runtime.backends.cuda_memory import CudaError, _cuda_python_version, load_cuda_api

    try:
        load_cuda_api()
    except CudaError as error:
        message = str(error)
    else:
        pytest.skip("this machine has a usable CUDA driver; the failure path cannot be seen here")
    major = _cuda_python_version().split(".")[0]
    assert f"cuda-python {major} needs a CUDA {major} driver" in message
    assert "pycuda" in message and "spamcam[gpu-cu12]" in message
