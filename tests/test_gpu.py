"""Code that needs an NVIDIA GPU, CUDA or TensorRT. Each test runs where its hardware and libraries
exist and skips with the reason elsewhere (CI has neither)."""
import json

import numpy as np
import pytest


def _cuda_api():
    try:
        from runtime.backends.cuda_memory import load_cuda_api

        return load_cuda_api()
    except (ImportError, RuntimeError) as error:  # CudaError is a RuntimeError
        pytest.skip(f"no usable CUDA through cuda-python/pycuda here: {error}")


def _tensorrt():
    try:
        import tensorrt
    except ImportError:
        pytest.skip("TensorRT is not installed (JetPack on a Jetson; `pip install tensorrt-cu12` or tensorrt-cu13 elsewhere)")
    _cuda_api()
    return tensorrt


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    return torch


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    _tensorrt()  # only the TensorRT tests use it: skip before training where TensorRT is missing
    from export.onnx_export import export_onnx
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("gpu")
    record = train(TrainConfig(dataset="embedded", out=str(out), epochs=1, limits={"train": 512, "val": 64},
                               progress=False, device="cpu"))
    return export_onnx(record["checkpoint"], out / "model.onnx")


def test_cuda_memory_round_trip_through_pinned_and_device_buffers():
    from runtime.backends.cuda_memory import DeviceBuffer, PinnedBuffer

    api = _cuda_api()
    stream = api.stream()
    data = np.random.default_rng(0).random(4096, dtype=np.float32)
    with PinnedBuffer(api, 4096, np.float32) as host, DeviceBuffer(api, data.nbytes) as device, \
            PinnedBuffer(api, 4096, np.float32) as back:
        host.array[:] = data
        device.upload(host.array, stream)
        device.download(back.array, stream)
        api.synchronize(stream)
        np.testing.assert_array_equal(back.array, data)
        with pytest.raises(ValueError, match="bytes into a"):
            device.upload(np.zeros(8192, np.float32), stream)  # bounds-checked
    api.destroy_stream(stream)
    assert api.device_description()["gpu"]


def test_amp_training_on_cuda_writes_a_cpu_loadable_checkpoint(tmp_path):
    _torch_cuda()
    from training.checkpoint import load_model
    from training.train import TrainConfig, train

    record = train(TrainConfig(dataset="embedded", out=str(tmp_path), epochs=2, limits={"train": 1024, "val": 128},
                               progress=False, device="cuda", amp=True))
    model, payload = load_model(record["checkpoint"])
    assert next(model.parameters()).device.type == "cpu" and payload["extra"]["epoch"] == 2
    assert record["val_classification_ap"] > 0.5


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_engine_matches_onnxruntime(small_onnx, tmp_path, precision):
    _tensorrt()
    from engines.tensorrt_engine import build_tensorrt_engine
    from runtime.backends import open_backend

    engine = build_tensorrt_engine(small_onnx, tmp_path / f"m.{precision}.engine", precision=precision, batch=(1, 2, 4),
                                   timing_cache=tmp_path / "cache")
    images = np.random.default_rng(1).random((6, 1, 128, 128), dtype=np.float32)  # > max batch: chunked
    expected = open_backend(small_onnx).infer(images)
    got = open_backend(engine).infer(images)
    tolerance = 2e-2 if precision == "fp16" else 1e-3
    assert np.abs(got - expected).max() <= tolerance * max(1.0, np.abs(expected).max())
    assert (tmp_path / "cache").stat().st_size > 0


def test_tensorrt_int8_engine_from_qdq_model(small_onnx, tmp_path):
    _tensorrt()
    from calibration.quantize import quantize_int8
    from engines.tensorrt_engine import build_tensorrt_engine
    from runtime.backends import open_backend

    qdq = quantize_int8(small_onnx, tmp_path / "m.int8.onnx", calibration="embedded", samples=64, show_progress=False)
    engine = build_tensorrt_engine(qdq, tmp_path / "m.int8.engine", precision="int8")
    images = np.random.default_rng(2).random((2, 1, 128, 128), dtype=np.float32)
    expected = open_backend(qdq).infer(images)
    got = open_backend(engine).infer(images)
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()


def test_engine_built_for_another_gpu_is_refused(small_onnx, tmp_path):
    _tensorrt()
    from engines.tensorrt_engine import build_tensorrt_engine
    from runtime.backends import open_backend, sidecar_path

    engine = build_tensorrt_engine(small_onnx, tmp_path / "m.engine", precision="fp32")
    sidecar = sidecar_path(engine)
    data = json.loads(sidecar.read_text())
    data["extra"]["gpu"] = "Some Other GPU"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(RuntimeError, match="built elsewhere"):
        open_backend(engine)
