"""Triton Inference Server backend: `triton://HOST[:PORT]/MODEL[/VERSION]` (gRPC, port 8001 by default)
or `triton+http://HOST[:PORT]/MODEL[/VERSION]` (HTTP, port 8000).

A thin edge client: the model runs on the server (a GPU box shared by a fleet of cameras, its
requests batched by Triton's dynamic batcher), and everything spamcam needs to localize — classes,
thresholds, geometry — comes from the model config's `spamcam` parameter, which export-triton writes
(engines/triton_repository.py). Pre- and post-processing stay on the client, as with a local model.

tritonclient is imported here only (`pip install 'spamcam[triton]'`). A server that cannot be reached,
a model that is not ready or that has no spamcam metadata is refused at open with what to do. A
server that stops answering during a run is retried with back-off for `give_up_after` seconds (a
restart, a network blip), then `ServerLost` is raised: the app ends the run as for a lost camera.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError, DeviceError, ModelError, ServerLost
from ..model_info import METADATA_KEY, MetadataError, ModelInfo

__all__ = ["TritonBackend", "TRITON_SCHEMES", "is_triton_uri", "parse_triton_uri"]

TRITON_SCHEMES = {"triton": ("grpc", 8001), "triton+grpc": ("grpc", 8001), "triton+http": ("http", 8000)}


def is_triton_uri(model) -> bool:
    return isinstance(model, str) and model.split("://", 1)[0] in TRITON_SCHEMES and "://" in model


def parse_triton_uri(uri: str) -> tuple[str, str, str, str]:
    """-> (protocol, host:port, model, version ("" for the server's choice))."""
    scheme, _, rest = uri.partition("://")
    if scheme not in TRITON_SCHEMES:
        raise ConfigError(f"{uri}: expected triton://HOST[:PORT]/MODEL (gRPC) or triton+http://HOST[:PORT]/MODEL")
    protocol, default_port = TRITON_SCHEMES[scheme]
    address, _, path = rest.partition("/")
    model, _, version = path.strip("/").partition("/")
    if not address or not model or "/" in version or (version and not version.isdigit()):
        raise ConfigError(f"{uri}: expected {scheme}://HOST[:PORT]/MODEL[/VERSION], e.g. {scheme}://127.0.0.1:"
                          f"{default_port}/birds")
    if ":" not in address:
        address = f"{address}:{default_port}"
    return protocol, address, model, version


class TritonBackend:
    name = "triton"

    def __init__(self, uri: str, *, timeout: float = 10.0, give_up_after: float = 30.0,
                 backoff: tuple[float, float] = (0.25, 4.0)) -> None:
        self.uri, self.give_up_after, self.backoff = uri, give_up_after, backoff
        self.retries = 0  # requests that had to be retried because the server did not answer
        self.protocol, self.address, self.model, self.version = parse_triton_uri(uri)
        try:
            if self.protocol == "grpc":
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except ImportError as error:
            raise DeviceError(f"{uri}: triton:// models need tritonclient: pip install 'spamcam[triton]'") from error
        from tritonclient.utils import InferenceServerException

        self._module, self._error = client_module, InferenceServerException
        options = {"network_timeout": timeout} if self.protocol == "http" else {}
        self.client = client_module.InferenceServerClient(url=self.address, **options)
        try:
            ready = self.client.is_model_ready(self.model, self.version)
        except Exception as error:  # grpc / http connection errors come in several types
            self.client.close()
            raise DeviceError(f"{uri}: cannot reach Triton at {self.address} ({_short(error)}); is tritonserver "
                              "running there, and is the port its " + self.protocol.upper() + " port?") from None
        if not ready:
            message = (f"{uri}: Triton at {self.address} has no ready model {self.model!r}"
                       + (f" version {self.version}" if self.version else "") + self._available())
            self.client.close()
            raise ModelError(message)
        config = self.client.get_model_config(self.model, self.version, **({"as_json": True}
                                                                             if self.protocol == "grpc" else {}))
        config = config.get("config", config)
        text = config.get("parameters", {}).get(METADATA_KEY, {}).get("string_value")
        if not text:
            self.client.close()
            raise MetadataError(f"{uri}: the model's Triton config has no '{METADATA_KEY}' parameter with spamcam's "
                                "metadata; write its repository with export-triton")
        self.info = ModelInfo.from_json(text, uri)
        self.max_batch = int(config.get("max_batch_size", 0) or 0)  # 0: the model takes no batch dimension

    def _available(self) -> str:
        try:
            index = self.client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
            models = index.get("models", index) if isinstance(index, dict) else index
            names = sorted({m.get("name") for m in models if m.get("state", "READY") == "READY"})
            return f"; ready there: {', '.join(names) or 'none'}"
        except Exception:
            return ""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != self.info.in_channels:
            raise ModelError(f"expected a batch (B, {self.info.in_channels}, H, W), got {batch.shape}")
        step = self.max_batch or len(batch)
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        request = self._module.InferInput(self.info.input_name, list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        output = self._module.InferRequestedOutput(self.info.output_name)
        started, delay = time.monotonic(), self.backoff[0]
        while True:
            try:
                result = self.client.infer(self.model, [request], model_version=self.version, outputs=[output])
                return np.asarray(result.as_numpy(self.info.output_name), dtype=np.float32)
            except (self._error, OSError) as error:
                if not _unreachable(error):
                    raise ModelError(f"{self.uri}: Triton refused the request ({_short(error)})") from None
                waited = time.monotonic() - started
                if waited + delay > self.give_up_after:
                    raise ServerLost(f"{self.uri}: Triton at {self.address} stopped answering ({_short(error)}); "
                                     f"gave up after {waited:.0f}s") from None
                self.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    def close(self) -> None:
        self.client.close()


def _unreachable(error: Exception) -> bool:
    """The server did not answer (down, restarting, network), as opposed to refusing the request, or
    answering that the model is not loaded (it is being reloaded)."""
    if isinstance(error, OSError):  # the HTTP client's connection errors
        return True
    text = str(error)
    return any(mark in text for mark in ("UNAVAILABLE", "Connection refused", "failed to connect", "DEADLINE_EXCEEDED",
                                         "Socket closed", "not ready", "unavailable"))


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
