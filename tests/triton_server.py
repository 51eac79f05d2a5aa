"""A real Triton Inference Server for the tests, on loopback.

NVIDIA's `nvidia-pytriton` wheel (PyPI) bundles a `tritonserver` binary with Triton's Python backend
(no ONNX Runtime or TensorRT backend). `prepare` unpacks that binary and the Python backend's stub
for this Python, plus numpy < 2 and ONNX Runtime for the stub's own interpreter (pytriton pins numpy
< 2: the stub's tensors come back empty with numpy 2), into .venv/tritonserver; spamcam's own
environment keeps numpy 2. The test model is served by the Python backend running the exported
ONNX model with ONNX Runtime inside Triton, behind the config export-triton writes, so the
client, the protocols, the dynamic batcher and the metadata parameter are all Triton's own.

    python tests/triton_server.py --prepare      # what `make setup` runs
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from brokers import free_port  # tests/ is on sys.path: pytest's, or this script's own folder

ROOT = Path(__file__).resolve().parents[1]
PYTRITON = "nvidia-pytriton==0.7.0"
SERVER_PACKAGES = ("numpy<2", "onnxruntime<1.21")
DEFAULT_DIR = ROOT / ".venv" / "tritonserver"

MODEL_PY = '''import sys
sys.path.insert(0, {site!r})
from pathlib import Path

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """The exported ONNX model, run by ONNX Runtime inside Triton's Python backend."""

    def initialize(self, args):
        path = str(Path(__file__).with_name("model.onnx"))
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, {input!r}).as_numpy()
            cams = self.session.run(None, {{{input!r}: images}})[0].astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor({output!r}, cams)]))
        return responses
'''


def server_dir() -> Path:
    return Path(os.environ.get("SPAMCAM_TRITONSERVER_DIR", DEFAULT_DIR))


def binary(folder: Path | None = None) -> Path:
    return (folder or server_dir()) / "pytriton" / "tritonserver" / "bin" / "tritonserver"


def missing_reason(folder: Path | None = None) -> str | None:
    """Why no server can run here, or None."""
    folder = folder or server_dir()
    if not binary(folder).is_file():
        return f"no tritonserver in {folder} (make setup, or python tests/triton_server.py --prepare)"
    stub = folder / "pytriton" / "tritonserver" / "backends" / "python" / "triton_python_backend_stub"
    if not stub.is_file():
        return f"no Python backend stub for Python {sys.version_info.major}.{sys.version_info.minor} in {folder}"
    return None


def prepare(folder: Path) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, PYTRITON], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
            archive.extractall(folder, members)
    tritonserver = folder / "pytriton" / "tritonserver"
    stub = tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise SystemExit(f"{PYTRITON} has no Python backend stub for Python {version}")
    shutil.copy2(stub, tritonserver / "backends" / "python" / stub.name)
    for path in (tritonserver / "bin" / "tritonserver", tritonserver / "backends" / "python" / stub.name):
        path.chmod(0o755)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder / "site"),
                    *SERVER_PACKAGES], check=True)


def python_model(repository: Path, name: str, onnx_path: Path, *, max_batch: int = 8, queue_delay_us: int = 2000) -> Path:
    """A model folder whose config is export-triton's, run by the Python backend (see the docstring)."""
    from engines.triton_repository import parse_triton_config, triton_config
    from runtime.model_info import load_onnx, read_onnx_metadata

    info = read_onnx_metadata(load_onnx(onnx_path), str(onnx_path))
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(onnx_path, folder / "1" / "model.onnx")
    (folder / "1" / "model.py").write_text(MODEL_PY.format(site=str(server_dir() / "site"), input=info.input_name,
                                                           output=info.output_name))
    text = triton_config(info, name=name, platform="backend:python", max_batch=max_batch, kind="cpu",
                         queue_delay_us=queue_delay_us)
    parse_triton_config(text)
    (folder / "config.pbtxt").write_text(text)
    return folder


class Server:
    """tritonserver on loopback ports, serving `repository`; a context manager."""

    def __init__(self, repository: Path, log: Path, timeout: float = 60.0, ports: tuple[int, int] | None = None) -> None:
        """`ports`: (HTTP, gRPC) to listen on (a restart on the same address); default: free ones."""
        self.http, self.grpc = ports or (free_port(), free_port())
        metrics = free_port()
        tritonserver = binary().parent.parent
        self.log = log
        self.process = subprocess.Popen(
            [str(binary()), "--model-repository", str(repository), "--backend-directory", str(tritonserver / "backends"),
             "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--http-port", str(self.http),
             "--grpc-port", str(self.grpc), "--metrics-port", str(metrics), "--allow-gpu-metrics", "false"],
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self.process.returncode}); its log: {log}\n"
                                   + log.read_text()[-3000:])
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/health/ready", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError(f"tritonserver did not become ready in {timeout:g}s; its log: {log}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--prepare"]:
        sys.path.insert(0, str(ROOT))
        if missing_reason() is None:
            print(f"tritonserver already in {server_dir()}")
        else:
            prepare(server_dir())
            print(f"tritonserver ready in {server_dir()}")
    else:
        raise SystemExit(__doc__)
