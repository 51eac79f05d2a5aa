"""`export-onnx ckpt.pt`: the CAM-only inference graph, with everything the runtime needs inside it.

Pooling and the two-way softmax are training-only (the paper removes them at inference), so the
graph is backbone + CAM layer, with the input normalisation folded in: it takes NCHW float32 images
in [0, 1] of any batch and size (the network is fully convolutional) and returns CAMs. Classes,
thresholds, geometry, ratio, pooling kernels and the output affine travel in `metadata_props` under
one versioned key (runtime.model_info), so no downstream tool re-types them by hand.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from runtime.cli import EXIT_CHECK_FAILED, number, run_cli
from runtime.config_cli import command_parser, option, parse_command
from runtime.output_paths import replace_atomically, writable_file
from runtime.preprocess import chw_with_channels
from runtime.model_info import TRAINED_ON_KEYS, ModelInfo, read_onnx_metadata, write_onnx_metadata
from training.checkpoint import load_model

__all__ = ["export_onnx", "verify_onnx", "main"]

OPSET = 18


class _CamOnly(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.cam(images)  # (B, C, N, M)


def _name_dimensions(model: onnx.ModelProto) -> None:
    """Readable symbolic dimensions for tools like Netron and trtexec."""
    names = {0: "batch", 2: "height", 3: "width"}
    for value, prefix in ((model.graph.input[0], ""), (model.graph.output[0], "cam_")):
        dims = value.type.tensor_type.shape.dim
        for axis, name in names.items():
            if not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = name if axis == 0 else prefix + name


def _run_exporter(wrapper: torch.nn.Module, example: torch.Tensor, info: ModelInfo, path: Path, *, dynamo: bool,
                  simplify: bool) -> None:
    """torch.onnx.export into `path`: dynamo first, the TorchScript exporter for what dynamo cannot trace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            try:
                from torch.export import Dim

                torch.onnx.export(wrapper, (example,), str(path), input_names=[info.input_name],
                                  output_names=[info.output_name], opset_version=OPSET, dynamo=True,
                                  dynamic_shapes={"images": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}},
                                  verbose=False, optimize=simplify)
                return
            except OSError:  # a full disk or a vanished folder is not the tracer's fault: say it as it is
                raise
            except Exception as error:
                print(f"export-onnx: dynamo export failed ({type(error).__name__}); using the TorchScript exporter",
                      file=sys.stderr)
        torch.onnx.export(wrapper, (example,), str(path), input_names=[info.input_name],
                          output_names=[info.output_name], opset_version=17, dynamo=False,
                          dynamic_axes={info.input_name: {0: "batch", 2: "height", 3: "width"},
                                        info.output_name: {0: "batch", 2: "cam_height", 3: "cam_width"}})


def export_onnx(checkpoint: str | Path, output: str | Path | None = None, *, simplify: bool = True,
                dynamo: bool = True) -> Path:
    """Write the ONNX model next to the checkpoint (or to `output`) and return its path."""
    checkpoint = Path(checkpoint)
    model, payload = load_model(checkpoint)  # the input first: a missing checkpoint must not create folders
    output = writable_file(output or checkpoint.with_suffix(".onnx"), "-o")
    info = ModelInfo.from_checkpoint_parts(payload["config"], payload["deploy"])
    train_config = payload["extra"].get("train_config", {})
    info.extra["trained_on"] = {key: train_config.get(key) for key in TRAINED_ON_KEYS}  # eval-cam's, quantize-int8's default
    wrapper = _CamOnly(model).eval()
    height, width = info.input_size
    example = torch.rand(2, info.in_channels, height, width)
    exported = output.with_name(f".{output.name}.export")  # the exporter's own file; the model appears complete or not at all
    try:
        _run_exporter(wrapper, example, info, exported, dynamo=dynamo, simplify=simplify)
        proto = onnx.load(str(exported))  # pulls in the dynamo exporter's external-data file, if it wrote one
    finally:
        for leftover in [exported, *exported.parent.glob(exported.name + ".data")]:
            leftover.unlink(missing_ok=True)
    _name_dimensions(proto)
    write_onnx_metadata(proto, info)
    proto.doc_string = (f"spamcam CAM-only graph ({info.backbone}, {info.pooling} pooling). Input '{info.input_name}': "
                        f"{info.layout}. Output '{info.output_name}': class activation maps (B, C, N, M).")
    onnx.checker.check_model(proto, full_check=True)
    return replace_atomically(output, lambda temporary: onnx.save(proto, str(temporary)))


def verify_onnx(checkpoint: str | Path, onnx_path: str | Path, images: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch| over a batch of real images (B, C, H, W) in [0, 1]."""
    import onnxruntime as ort

    model, _ = load_model(checkpoint)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.cam(torch.from_numpy(images)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
    return float(np.abs(got - expected).max())


def _verification_images(info: ModelInfo, dataset: str | None, count: int) -> np.ndarray:
    from training.data.registry import load_splits

    splits = load_splits(dataset or "embedded", input_size=tuple(info.input_size), channels=info.in_channels,
                         sizes={"test": count})
    images = [chw_with_channels(splits.test[i].image, info.in_channels) for i in range(min(count, len(splits.test)))]
    return np.stack(images).astype(np.float32)


EXAMPLES = """examples:
  export-onnx runs/cam/ckpt.pt                      # writes runs/cam/ckpt.onnx
  export-onnx runs/cam/ckpt.pt -o model.onnx --verify
  python -c "import onnx; print(onnx.load('model.onnx').metadata_props)"   # what travels with it

The graph's input is NCHW float32 in [0, 1] (normalisation is inside); batch, height and width are
dynamic. The output is the CAMs (B, C, N, M); pooling and softmax are training-only. Next to the
model it writes MODEL.onnx.config.yaml, the options it ran with (export-onnx --config reads it).
"""


@dataclass(kw_only=True)
class ExportCommand:
    """export-onnx's options."""

    checkpoint: str = option(help="ckpt.pt written by train-cam", positional=True)
    output: str | None = option(None, "ONNX file (default: next to the checkpoint, .onnx)", flags=("-o", "--output"))
    verify: bool = option(False, "compare ONNX Runtime with PyTorch on real images")
    verify_images: int = option(16, "real images --verify runs", type=number(int, minimum=1))
    verify_tolerance: float = option(1e-4, "max abs difference --verify accepts", type=number(float, minimum=0),
                                     old_flags=("--tolerance",))
    dataset: str | None = option(None, "images for --verify (default: the training dataset)")
    simplify: bool = option(True, "skip the exporter's graph optimisation", switch="--no-simplify")
    legacy: bool = option(False, "use the TorchScript exporter instead of dynamo")


def build_parser():
    return command_parser(ExportCommand, prog="export-onnx", description="Export a spamcam checkpoint to a CAM-only "
                          "ONNX model with its metadata.", epilog=EXAMPLES)


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        path = export_onnx(args.checkpoint, args.output, simplify=args.simplify, dynamo=not args.legacy)
        info = read_onnx_metadata(onnx.load(str(path)), str(path))
        print(f"export-onnx: wrote {path} ({path.stat().st_size / 1e6:.2f} MB; classes {info.classes}; "
              f"input {info.in_channels}x{info.input_size[0]}x{info.input_size[1]}, dynamic batch/size)")
        if args.verify:
            images = _verification_images(info, args.dataset or info.trained_on["dataset"], args.verify_images)
            difference = verify_onnx(args.checkpoint, path, images)
            verdict = "ok" if difference <= args.verify_tolerance else "FAILED"
            print(f"export-onnx: verify on {len(images)} real images: max |ONNX Runtime - PyTorch| = {difference:.2e} "
                  f"(tolerance {args.verify_tolerance:g}) {verdict}")
            if difference > args.verify_tolerance:
                return EXIT_CHECK_FAILED
        command.save_beside(path)
        return 0

    return run_cli("export-onnx", work, interrupted="no model was written")


if __name__ == "__main__":
    sys.exit(main())
