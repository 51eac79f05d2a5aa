"""The calibration options, defined once for every tool that calibrates (quantize-int8, build-engine,
compare-backends), so that the same thing has the same name and default everywhere: a mixin for
their configs (runtime/config_cli.py generates the options from it)."""
from __future__ import annotations

from dataclasses import dataclass

from runtime.cli import number
from runtime.config_cli import option
from training.data.registry import DATASET_SPECS

from .quantize import CALIBRATION_METHODS, DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES

__all__ = ["CalibrationOptions", "CALIBRATION_GROUP"]

CALIB_HELP = (f"calibration images: a folder, or a dataset spec ({DATASET_SPECS}); "
              "default: the dataset the model was trained on, as export-onnx recorded it")


@dataclass(kw_only=True)
class CalibrationOptions:
    calib: str | None = option(None, CALIB_HELP, metavar="DATA")
    calib_samples: int = option(DEFAULT_CALIB_SAMPLES, "calibration images", type=number(int, minimum=1), metavar="N",
                                old_flags=("--samples",))  # quantize-int8's earlier name
    calib_method: str = option(DEFAULT_CALIB_METHOD, "how activation ranges are chosen", choices=CALIBRATION_METHODS,
                               old_flags=("--method",))


CALIBRATION_GROUP = ("calibration (INT8)", CalibrationOptions)
