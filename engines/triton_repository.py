"""`export-triton`: a Triton Inference Server model repository from an ONNX model or a TensorRT engine.

    <repository>/<name>/config.pbtxt
    <repository>/<name>/<version>/model.onnx   (platform onnxruntime_onnx)
                                  model.plan   (platform tensorrt_plan)

The config has the platform, `max_batch_size` (an engine's: its profile's largest batch), the input
and output with their dynamic (-1) or fixed dims, dynamic batching with a queue delay, the instance
groups, and spamcam's metadata (ModelInfo's JSON) as the parameter `spamcam`, which the
`triton://` backend (runtime/backends/triton_backend.py) reads back: a thin edge client needs
nothing but the server's address. Where tritonclient is installed the text is parsed with Triton's
own ModelConfig protobuf before anything is written, so a config Triton would refuse is never left
in a repository.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.backends import ENGINE_SUFFIXES, sidecar_path
from runtime.cli import number, run_cli
from runtime.config_cli import command_parser, option, parse_command
from runtime.errors import ConfigError
from runtime.geometry import cam_size, validate_chain
from runtime.model_info import METADATA_KEY, ModelInfo, MetadataError, load_onnx, read_onnx_metadata
from runtime.output_paths import write_bytes_atomic, write_text_atomic

__all__ = ["TritonCommand", "export_triton", "triton_config", "parse_triton_config", "TRITON_PARAMETER",
           "INSTANCE_KINDS", "main"]

TRITON_PARAMETER = METADATA_KEY  # the config parameter holding spamcam's metadata, as in the ONNX metadata
INSTANCE_KINDS = ("auto", "gpu", "cpu")
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 100
# TensorRT DataType names (engine sidecar "io_types") -> Triton's data types.
_TRITON_TYPES = {"FLOAT": "TYPE_FP32", "HALF": "TYPE_FP16", "BF16": "TYPE_BF16", "INT8": "TYPE_INT8",
                 "INT32": "TYPE_INT32"}

EXAMPLES = """examples:
  export-triton model.onnx --repository models/                     # models/model/1/model.onnx + config.pbtxt
  export-triton model.fp16.engine --repository models/ --name birds --instances 2
  export-triton model.onnx --repository models/ --max-batch 16 --queue-delay-us 500 --kind cpu

Then: tritonserver --model-repository models/, and on each edge device
  edge_app --model triton://server:8001/birds --source rtsp://cam/live ...   (gRPC; triton+http:// on :8000)
"""


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dims(values) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def triton_config(info: ModelInfo, *, name: str, platform: str, max_batch: int, input_hw=None, output_hw=None,
                  queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, instances: int = 1, kind: str = "auto",
                  input_type: str = "TYPE_FP32", output_type: str = "TYPE_FP32") -> str:
    """The config.pbtxt text. `platform`: Triton's (onnxruntime_onnx, tensorrt_plan), or "backend:NAME"
    for a backend by name (e.g. "backend:python"). `input_hw` / `output_hw`: fixed (H, W) of a static
    engine, else dynamic."""
    if kind not in INSTANCE_KINDS:
        raise ConfigError(f"kind must be one of {INSTANCE_KINDS}, got {kind!r}")
    in_dims = [info.in_channels, *(input_hw or (-1, -1))]
    out_dims = [len(info.classes), *(output_hw or (-1, -1))]
    instance = f"    count: {int(instances)}\n" + (f"    kind: KIND_{kind.upper()}\n" if kind != "auto" else "")
    runs_on = (f"backend: {_pbtxt_string(platform[len('backend:'):])}" if platform.startswith("backend:")
               else f"platform: {_pbtxt_string(platform)}")
    return (f"name: {_pbtxt_string(name)}\n"
            f"{runs_on}\n"
            f"max_batch_size: {int(max_batch)}\n"
            "input [\n  {\n"
            f"    name: {_pbtxt_string(info.input_name)}\n    data_type: {input_type}\n    dims: {_dims(in_dims)}\n"
            "  }\n]\n"
            "output [\n  {\n"
            f"    name: {_pbtxt_string(info.output_name)}\n    data_type: {output_type}\n    dims: {_dims(out_dims)}\n"
            "  }\n]\n"
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(queue_delay_us)}\n}}\n"
            f"instance_group [\n  {{\n{instance}  }}\n]\n"
            "parameters {\n"
            f"  key: {_pbtxt_string(TRITON_PARAMETER)}\n"
            f"  value: {{ string_value: {_pbtxt_string(info.to_json())} }}\n"
            "}\n")


def triton_protobuf_available() -> bool:
    try:
        from tritonclient.grpc import model_config_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def parse_triton_config(text: str, source: str = "config.pbtxt"):
    """Triton's ModelConfig message from config.pbtxt text (tritonclient's own protobuf), or None
    where tritonclient is not installed. A text Triton would refuse raises ConfigError."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: not a valid Triton model config ({error})") from error


def _model_source(path: Path):
    """(ModelInfo, platform, file name in the version folder, engine profile or None, I/O types)."""
    if path.suffix == ".onnx":
        return read_onnx_metadata(load_onnx(path), str(path)), "onnxruntime_onnx", "model.onnx", None, {}
    if path.suffix in ENGINE_SUFFIXES:
        sidecar = sidecar_path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such engine")
        if not sidecar.is_file():
            raise MetadataError(f"{path}: no sidecar {sidecar.name} with spamcam metadata next to the engine; "
                                "build it with build-engine")
        info = ModelInfo.from_json(sidecar.read_text(), str(sidecar))
        return info, "tensorrt_plan", "model.plan", info.extra.get("profile"), info.extra.get("io_types", {})
    raise ConfigError(f"{path}: export-triton takes an .onnx model or a TensorRT {'/'.join(ENGINE_SUFFIXES)} engine")


def export_triton(model: str | Path, repository: str | Path, *, name: str | None = None, version: int = 1,
                  max_batch: int | None = None, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, instances: int = 1,
                  kind: str = "auto", overwrite: bool = False) -> Path:
    """Write the model into `repository`; returns the model's folder (`<repository>/<name>`)."""
    model = Path(model)
    info, platform, file_name, profile, io_types = _model_source(model)
    name = name or model.name.split(".")[0]
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a model name is one folder name")
    input_hw = output_hw = None
    if profile:  # a TensorRT engine: its profile decides the batch and whether H, W are fixed
        low, _, high = profile
        if max_batch is not None and max_batch > high[0]:
            raise ConfigError(f"--max-batch {max_batch}: the engine's profile allows at most {high[0]}; rebuild it with "
                              "build-engine --max-batch")
        max_batch = max_batch or high[0]
        if tuple(low[2:]) == tuple(high[2:]):
            chain = validate_chain(info.geometry)
            input_hw, output_hw = tuple(high[2:]), tuple(cam_size(chain, v) for v in high[2:])
    max_batch = max_batch or DEFAULT_MAX_BATCH
    types = {role: _TRITON_TYPES.get(io_types.get(tensor, "FLOAT")) for role, tensor in
             (("input", info.input_name), ("output", info.output_name))}
    unknown = [f"{role} {io_types.get(t)}" for role, t in (("input", info.input_name), ("output", info.output_name))
               if types[role] is None]
    if unknown:
        raise ConfigError(f"{model}: engine I/O types {unknown} have no Triton data type here")
    text = triton_config(info, name=name, platform=platform, max_batch=max_batch, input_hw=input_hw,
                         output_hw=output_hw, queue_delay_us=queue_delay_us, instances=instances, kind=kind,
                         input_type=types["input"], output_type=types["output"])
    parse_triton_config(text)  # before anything is written
    folder = Path(repository).expanduser() / name
    version_folder = folder / str(int(version))
    target = version_folder / file_name
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists; give --overwrite or another --version")
    try:
        version_folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, model.read_bytes())
        write_text_atomic(folder / "config.pbtxt", text)
    except OSError as error:
        raise ConfigError(f"--repository {repository}: cannot write there ({error.strerror or error})") from error
    return folder


@dataclass
class TritonCommand:
    """export-triton's options."""

    model: str = option(help="model.onnx (also INT8) or a TensorRT model.engine with its sidecar", positional=True,
                        metavar="MODEL")
    repository: str = option("models", "the model repository (tritonserver --model-repository)", metavar="DIR")
    name: str | None = option(None, "the model's name in Triton (default: the file's name before its first dot)")
    version: int = option(1, "", type=number(int, minimum=1))
    max_batch: int | None = option(None, "max_batch_size (default: an engine's profile maximum, else "
                                   f"{DEFAULT_MAX_BATCH})", type=number(int, minimum=1))
    queue_delay_us: int = option(DEFAULT_QUEUE_DELAY_US, "dynamic batching: how long a request may wait for others, "
                                 "microseconds", type=number(int, minimum=0))
    instances: int = option(1, "model instances (instance_group count)", type=number(int, minimum=1))
    kind: str = option("auto", "instance kind: auto (Triton's choice), gpu or cpu", choices=INSTANCE_KINDS)
    overwrite: bool = option(False, "replace a version folder's model file")


def build_parser():
    return command_parser(TritonCommand, prog="export-triton", description="Write a Triton Inference Server model "
                          "repository (config.pbtxt + model) for a spamcam model.", epilog=EXAMPLES)


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        folder = export_triton(args.model, args.repository, name=args.name, version=args.version,
                               max_batch=args.max_batch, queue_delay_us=args.queue_delay_us,
                               instances=args.instances, kind=args.kind, overwrite=args.overwrite)
        command.save_beside(folder / "config.pbtxt")
        print(f"export-triton: wrote {folder} (config.pbtxt, {args.version}/)"
              + ("; checked with Triton's ModelConfig" if triton_protobuf_available()
                 else "; not checked: pip install 'spamcam[triton]' to check it with Triton's ModelConfig"))
        return 0

    return run_cli("export-triton", work)


if __name__ == "__main__":
    sys.exit(main())
