"""The calibration options, defined once for every tool that calibrates (quantize-int8, build-engine,
compare-backends), so that the same thing has the same name and default everywhere."""
from __future__ import annotations

import argparse

from runtime.cli import number

from .quantize import CALIBRATION_METHODS, DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES

__all__ = ["add_calibration_arguments"]

CALIB_HELP = ("calibration images: a folder, or a dataset spec (mnist128, embedded, voc:PATH, folder:PATH, csv:PATH); "
              "default: the dataset the model was trained on, as export-onnx recorded it")


def add_calibration_arguments(parser: argparse.ArgumentParser, *, old_names: bool = False) -> None:
    """--calib, --calib-samples, --calib-method; `old_names` also accepts quantize-int8's earlier
    --samples/--method (hidden from --help) so that existing scripts keep working."""
    group = parser.add_argument_group("calibration (INT8)")
    group.add_argument("--calib", metavar="DATA", help=CALIB_HELP)
    group.add_argument("--calib-samples", type=number(int, minimum=1), default=DEFAULT_CALIB_SAMPLES, metavar="N",
                       help="calibration images (default: %(default)s)")
    group.add_argument("--calib-method", default=DEFAULT_CALIB_METHOD, choices=CALIBRATION_METHODS,
                       help="how activation ranges are chosen (default: %(default)s)")
    if old_names:
        group.add_argument("--samples", dest="calib_samples", type=number(int, minimum=1), default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        group.add_argument("--method", dest="calib_method", choices=CALIBRATION_METHODS, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
