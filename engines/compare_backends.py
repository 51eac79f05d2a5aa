"""`compare-backends`: what a deployment costs. The same test images go through a reference (the
PyTorch checkpoint, or an FP32 ONNX model) and through each deployed form of it (FP32 ONNX, INT8
Q/DQ, an ONNX Runtime-optimized model, TensorRT engines where TensorRT runs), and the report says
how far each one's CAMs drift (max |ΔCAM|, SQNR), how many of the reference's boxes it keeps (IoU ≥
0.5, per class), what it does to classification / extent AP and MaxBoxAccV2, and how fast it runs.
For INT8 models it adds the per-layer error (calibration/layer_error.py), so that a bad layer can be
named and kept in float (`quantize-int8 --exclude` / `--exclude-worst`).

Given only a checkpoint, it makes those forms itself in a work folder (`--keep DIR` keeps them).
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.layer_error import CAM_SQNR_FLOOR, WEIGHT_SQNR_FLOOR, format_layer_errors, layer_errors
from calibration.layer_error import sqnr_db as cam_sqnr
from calibration.options import CALIBRATION_GROUP, CalibrationOptions
from calibration.quantize import DEFAULT_CALIB_METHOD, DEFAULT_CALIB_SAMPLES
from runtime.cli import number, run_cli
from runtime.config_cli import command_parser, option, parse_command
from runtime.evaluation import Predictions, evaluate
from runtime.output_paths import json_destination, writable_folder
from runtime.metrics import box_iou
from runtime.errors import ConfigError, ModelError, NotFoundError
from training.data.split_plan import SPLITS

__all__ = ["compare_backends", "cam_sqnr", "box_agreement", "SQNR_FLOOR", "main"]

SQNR_FLOOR = CAM_SQNR_FLOOR
MATCH_IOU = 0.5  # a deployed box agrees with a reference box of the same class at this IoU or more
LAYER_IMAGES = 32  # images for the per-layer INT8 report


def box_agreement(reference: list, other: list, classes: list[str]) -> dict[str, dict[str, float]]:
    """Per class: of the reference's boxes, the share the other model also finds (`kept`), and of
    the other model's boxes, the share the reference also has (`same`), greedy one-to-one matching
    at IoU >= MATCH_IOU within each image."""
    counts = {c: [0, 0, 0] for c in range(len(classes))}  # matched, reference boxes, other boxes
    for ref_image, other_image in zip(reference, other):
        for c in counts:
            a = np.array([d.box for d in ref_image if d.class_index == c]).reshape(-1, 4)
            b = np.array([d.box for d in other_image if d.class_index == c]).reshape(-1, 4)
            counts[c][1] += len(a)
            counts[c][2] += len(b)
            if len(a) and len(b):
                iou = box_iou(a, b)
                while iou.size and iou.max() >= MATCH_IOU:
                    i, j = np.unravel_index(np.argmax(iou), iou.shape)
                    counts[c][0] += 1
                    iou[i, :], iou[:, j] = -1, -1
    return {classes[c]: {"kept": m / r if r else 1.0, "same": m / o if o else 1.0, "reference_boxes": r, "boxes": o}
            for c, (m, r, o) in counts.items()}


@dataclass
class _Row:
    model: str
    backend: str
    precision: str
    metrics: dict[str, Any]
    seconds_per_image: float
    cam_max_abs: float = 0.0
    cam_sqnr: float = math.inf
    boxes: dict[str, dict[str, float]] = field(default_factory=dict)
    layers: list[dict] | None = None

    def flags(self) -> list[str]:
        found = []
        if self.cam_sqnr < SQNR_FLOOR:
            found.append(f"CAM SQNR {self.cam_sqnr:.1f} dB < {SQNR_FLOOR:g}")
        for layer in self.layers or []:
            if not layer["flagged"]:
                continue
            weak_weight = layer["weight_sqnr"] is not None and layer["weight_sqnr"] < WEIGHT_SQNR_FLOOR
            kind, value = ("weight", layer["weight_sqnr"]) if weak_weight else ("output", layer["output_sqnr"])
            found.append(f"layer {layer['node']}: {kind} SQNR {value:.1f} dB")
        return found


def _describe(path: Path, info) -> tuple[str, str]:
    if path.suffix == ".pt":
        return "pytorch", "fp32"
    backend = "tensorrt" if path.suffix in (".engine", ".plan", ".trt") else "onnxruntime"
    precision = info.extra.get("precision", "fp32")
    if info.extra.get("optimized_for"):
        backend += " (optimized)"
    return backend, precision


def _predict_timed(model, data) -> tuple[Predictions, float]:
    started = time.perf_counter()
    predictions = model.predict(data)
    return predictions, (time.perf_counter() - started) / max(1, len(data))


def make_variants(checkpoint: Path, folder: Path, *, calibration: str | None = None,
                  calib_samples: int = DEFAULT_CALIB_SAMPLES,
                  calib_method: str = DEFAULT_CALIB_METHOD) -> list[Path]:
    """FP32 ONNX, INT8 Q/DQ, ONNX Runtime-optimized FP32 and, where TensorRT and a GPU work, a TensorRT
    FP16 engine, all made from the checkpoint into `folder`."""
    from calibration.quantize import quantize_int8

    from export.onnx_export import export_onnx

    from .onnxruntime_model import build_onnxruntime_model
    from .tensorrt_engine import build_tensorrt_engine

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(checkpoint, folder / "model.onnx")
    int8 = quantize_int8(fp32, folder / "model.int8.onnx", calibration=calibration, samples=calib_samples,
                         method=calib_method, show_progress=False)
    variants = [fp32, int8, build_onnxruntime_model(fp32, folder / "model.ort.onnx")]
    try:
        variants.append(build_tensorrt_engine(fp32, folder / "model.fp16.engine", precision="fp16"))
    except RuntimeError as error:  # no TensorRT or no usable GPU here: say so and compare the rest
        print(f"compare-backends: no TensorRT engine ({str(error).split('.')[0]})", file=sys.stderr)
    return variants


def compare_backends(reference: str | Path, models: list[str | Path] | None = None, *, dataset: str | None = None,
                     split: str = "test", limit: int | None = 500, work: str | Path | None = None,
                     calibration: str | None = None, calib_samples: int = DEFAULT_CALIB_SAMPLES,
                     calib_method: str = DEFAULT_CALIB_METHOD, progress: bool = True) -> dict[str, Any]:
    """Compare every model against the reference on the same images; returns the report as a dict
    (rows in the order given, the reference first). Without `models`, the reference must be a
    checkpoint and the deployed forms are made into `work` (a temporary folder when None)."""
    from runtime.preprocess import chw_with_channels
    from training.evaluate import load_for_eval, splits_for_model

    reference = Path(reference)
    with tempfile.TemporaryDirectory() as tmp:
        if not models:
            if reference.suffix != ".pt":
                raise ConfigError("give the models to compare, or a checkpoint (ckpt.pt) to make them from")
            models = make_variants(reference, Path(work) if work else Path(tmp), calibration=calibration,
                                   calib_samples=calib_samples, calib_method=calib_method)
        paths = [Path(m) for m in models]
        missing = [str(p) for p in [reference, *paths] if not p.is_file()]
        if missing:
            raise NotFoundError(f"no such model file: {', '.join(missing)}")
        loaded = {path: load_for_eval(path, progress=progress) for path in [reference, *paths]}  # each opened once
        base = loaded[reference]
        splits, seed = splits_for_model(base, dataset, sizes={split: limit} if limit else None)
        data = getattr(splits, split)
        fp32_onnx = next((p for p, m in loaded.items() if p.suffix == ".onnx"
                          and m.info.extra.get("precision", "fp32") != "int8"), None)
        rows, base_predictions, base_detections = [], None, None
        for path, model in loaded.items():
            if list(model.info.classes) != list(base.info.classes):
                raise ModelError(f"{path} has classes {model.info.classes}, the reference {base.info.classes}")
            predictions, seconds = _predict_timed(model, data)
            metrics = evaluate(predictions, model.info.localizer_params(), with_maxboxacc=True)
            detections = metrics.pop("_detections")
            row = _Row(str(path), *_describe(path, model.info), metrics, seconds)
            if base_predictions is None:
                base_predictions, base_detections = predictions, detections
            else:
                if predictions.cams.shape != base_predictions.cams.shape:
                    raise ModelError(f"{path} gives CAMs of shape {predictions.cams.shape[1:]}, the reference "
                                     f"{base_predictions.cams.shape[1:]}: not the same model")
                row.cam_max_abs = float(np.abs(predictions.cams - base_predictions.cams).max())
                row.cam_sqnr = cam_sqnr(base_predictions.cams, predictions.cams)
                row.boxes = box_agreement(base_detections, detections, list(base.info.classes))
            if row.precision == "int8" and path.suffix == ".onnx" and fp32_onnx is not None:
                images = np.stack([chw_with_channels(data[i].image, model.info.in_channels)
                                   for i in range(min(LAYER_IMAGES, len(data)))]).astype(np.float32)
                row.layers = [layer.to_dict() for layer in layer_errors(fp32_onnx, path, images)]
            rows.append(row)
    return {"reference": str(reference), "dataset": splits.description, "split": split, "seed": seed,
            "images": len(data), "classes": list(base.info.classes), "sqnr_floor_db": SQNR_FLOOR,
            "rows": [_row_dict(row, rows[0]) for row in rows]}


def _row_dict(row: _Row, base: _Row) -> dict[str, Any]:
    keys = ("classification_ap_mean", "extent_ap_mean", "MaxBoxAccV2")
    return {"model": row.model, "backend": row.backend, "precision": row.precision,
            "cam_max_abs_diff": row.cam_max_abs, "cam_sqnr_db": None if math.isinf(row.cam_sqnr) else row.cam_sqnr,
            "boxes": row.boxes,
            "metrics": {k: float(row.metrics[k]) for k in keys},
            "deltas": {k: float(row.metrics[k] - base.metrics[k]) for k in keys},
            "ms_per_image": 1000 * row.seconds_per_image, "layers": row.layers, "flags": row.flags()}


def format_report(report: dict[str, Any]) -> str:
    def pct(value):
        return f"{100 * value:+.1f}"

    lines = [f"{report['images']} images ({report['dataset']}, {report['split']} split, seed {report['seed']}); "
             f"reference {report['reference']}", "",
             "| model | backend | precision | max abs dCAM | CAM SQNR (dB) | boxes kept | boxes same | "
             "cls AP | extent AP | MaxBoxAccV2 | ms/image |", "| --- " * 11 + "|"]
    for i, row in enumerate(report["rows"]):
        kept = np.mean([b["kept"] for b in row["boxes"].values()]) if row["boxes"] else 1.0
        same = np.mean([b["same"] for b in row["boxes"].values()]) if row["boxes"] else 1.0
        m, d = row["metrics"], row["deltas"]
        cells = [Path(row["model"]).name, row["backend"], row["precision"],
                 "-" if i == 0 else f"{row['cam_max_abs_diff']:.3g}", "-" if i == 0 else ("identical" if row["cam_sqnr_db"] is None else f"{row['cam_sqnr_db']:.1f}"),
                 f"{100 * kept:.1f}%", f"{100 * same:.1f}%"]
        cells += [f"{100 * m[k]:.1f}" + ("" if i == 0 else f" ({pct(d[k])})")
                  for k in ("classification_ap_mean", "extent_ap_mean", "MaxBoxAccV2")]
        cells.append(f"{row['ms_per_image']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    if len(report["classes"]) > 1:
        lines += ["", "Boxes kept per class: " + "; ".join(
            f"{Path(r['model']).name}: " + ", ".join(f"{c} {100 * b['kept']:.0f}%" for c, b in r["boxes"].items())
            for r in report["rows"][1:])]
    for row in report["rows"]:
        if row["layers"]:
            lines += ["", f"Per-layer INT8 error of {Path(row['model']).name} (vs the FP32 ONNX model):",
                      format_layer_errors(row["layers"])]
    flagged = [(row["model"], flag) for row in report["rows"] for flag in row["flags"]]
    lines += [""] + ([f"FLAG {Path(model).name}: {flag}" for model, flag in flagged] or
                     ["No model flagged: every CAM SQNR is at least "
                      f"{report['sqnr_floor_db']:g} dB and every INT8 weight at least {WEIGHT_SQNR_FLOOR:g} dB."])
    return "\n".join(lines)


EXAMPLES = """examples:
  compare-backends runs/spam/ckpt.pt                        # make FP32/INT8/optimized (and TensorRT) forms, compare
  compare-backends runs/spam/ckpt.pt model.onnx model.int8.onnx model.fp16.engine --json report.json
  compare-backends model.onnx model.int8.onnx --limit 2000  # FP32 ONNX as the reference

A flagged INT8 layer can be kept in float: quantize-int8 model.onnx --exclude NODE, or --exclude-worst K.
Next to --json FILE it writes FILE.config.yaml (and into --keep DIR a config.yaml): the options it ran
with, for --config.
"""


@dataclass(kw_only=True)
class CompareCommand(CalibrationOptions):
    """compare-backends' options."""

    reference: str = option(help="ckpt.pt (PyTorch) or an FP32 model.onnx: what the others are compared with",
                            positional=True)
    models: list[str] = option(help="deployed models (.onnx, .engine); none: made from the checkpoint", factory=list,
                               positional=True, nargs="*")
    dataset: str | None = option(None, "default: the dataset the reference was trained on")
    split: str = option("test", "", choices=SPLITS)
    limit: int = option(500, "images compared (0 = all)", type=number(int, minimum=0))
    keep: str | None = option(None, "keep the models made from a checkpoint in DIR", metavar="DIR")
    json: str | None = option(None, "write the report to this JSON file (- : standard output, the table then goes to "
                              "stderr)")
    progress: bool = option(True, "no progress bar", switch="--no-progress")


def build_parser():
    return command_parser(CompareCommand, prog="compare-backends", description=__doc__.split("\n\n")[0],
                          epilog=EXAMPLES, groups=[CALIBRATION_GROUP])


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)
    args = command.config

    def work() -> int:
        missing = [m for m in [args.reference, *args.models] if not Path(m).is_file()]
        if missing:  # before the outputs are checked: they must not be made for nothing
            raise NotFoundError(f"no such model file: {', '.join(missing)}")
        json_target = json_destination(args.json)  # checked before the work, not after
        say = sys.stderr if json_target == "-" else sys.stdout  # --json -: standard output holds the JSON alone
        if args.keep:
            writable_folder(args.keep, "--keep", create=True)
        report = compare_backends(args.reference, args.models, dataset=args.dataset, split=args.split,
                                  limit=args.limit or None, work=args.keep, calibration=args.calib,
                                  calib_samples=args.calib_samples, calib_method=args.calib_method,
                                  progress=args.progress)
        print(format_report(report), file=say)
        if json_target:
            print(f"compare-backends: report written to {command.write_json(json_target, report)}", file=say)
        if args.keep:
            command.save_beside(args.keep, folder=True)
        return 0

    return run_cli("compare-backends", work, interrupted="no report was written")


if __name__ == "__main__":
    sys.exit(main())
