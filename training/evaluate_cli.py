"""`eval-cam`: the command line of training/evaluate.py, for a checkpoint, an ONNX model or a TensorRT
engine, on MNIST128, the embedded digits or an image-level/VOC dataset."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import EXIT_OUTPUT_FAILED, run_cli
from runtime.backends.triton_backend import is_triton_uri
from runtime.config_cli import command_parser, option, parse_command
from runtime.errors import NotFoundError
from runtime.output_paths import json_destination, writable_folder
from runtime.postprocess import BoxSettings

from .data.options import MNIST128_GROUP
from .evaluate import EvalConfig, evaluate_model, format_table, load_for_eval  # noqa: F401 (re-exported: the API used to live here)

__all__ = ["EvalCommand", "evaluate_model", "load_for_eval", "main"]

EXAMPLES = """examples:
  eval-cam runs/cam/ckpt.pt                         # the dataset it was trained on, test split
  eval-cam runs/cam/ckpt.pt --tune                  # choose projection, relative floor and r (widths, heights); store them
  eval-cam runs/cam/ckpt.pt --ratio 0.5 --ratio-y 0.3   # evaluate with r 0.5 for widths, 0.3 for heights
  eval-cam runs/cam/ckpt.pt --projection theoretical --relative-floor 0 --ratio-y same   # evaluate the paper's boxes
  eval-cam model.onnx --dataset mnist128 --json results.json
  eval-cam model.int8.onnx --dataset mnist128 --maxboxacc
  eval-cam runs/cam/ckpt.pt --save-vis vis/ --vis-count 24   # heat map, back-projection, boxes
  eval-cam --config results.json.config.yaml        # the run that wrote results.json, again

Next to --json FILE it writes FILE.config.yaml, and into --save-vis DIR a config.yaml: the options it
ran with, for --config.
"""


@dataclass(kw_only=True)
class EvalCommand(EvalConfig):
    """eval-cam's options: what to evaluate, how (`EvalConfig`), and where the metrics go."""

    model: str = option(help="ckpt.pt (PyTorch), model.onnx (ONNX Runtime), model.engine (TensorRT) or "
                        "triton://HOST:PORT/MODEL (Triton Inference Server)",
                        positional=True)
    json: str | None = option(None, "write all metrics to this JSON file (- : standard output, the table then goes to "
                              "stderr)")


def build_parser():
    return command_parser(EvalCommand, prog="eval-cam", description="Evaluate a CAM localizer: classification, "
                          "pin-pointing and extent AP (paper Table 1), optionally MaxBoxAccV2.", epilog=EXAMPLES,
                          groups=[MNIST128_GROUP])


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        if not is_triton_uri(args.model) and not Path(args.model).is_file():  # before the outputs are checked
            raise NotFoundError(f"{args.model}: no such model file")
        json_target = json_destination(args.json)  # checked before the evaluation, not after
        say = sys.stderr if json_target == "-" else sys.stdout  # --json -: standard output holds the JSON alone
        if args.save_vis:
            writable_folder(args.save_vis, "--save-vis")
        result = evaluate_model(args.model, args)
        print(format_table(result), file=say)
        if args.tune:
            chosen = BoxSettings.from_fields(result)
            print(f"eval-cam: {chosen.describe()} chosen on the validation split and stored in {args.model}", file=say)
        if json_target:
            print(f"eval-cam: metrics written to {command.write_json(json_target, result)}", file=say)
        if args.save_vis:
            print(f"eval-cam: {result['pictures_written']} pictures written to {args.save_vis}", file=say)
            if result["pictures_error"]:
                print(f"eval-cam: error: the pictures stopped there: {result['pictures_error']}", file=sys.stderr)
                return EXIT_OUTPUT_FAILED
            command.save_beside(args.save_vis, folder=True)
        return 0

    return run_cli("eval-cam", work, interrupted="nothing was written (the model's stored r is unchanged)")


if __name__ == "__main__":
    sys.exit(main())
