"""Evaluation as a library: open a checkpoint, ONNX model or TensorRT engine, pick the data it should
be tested on, and measure Table 1's numbers (classification / pin-pointing / extent AP) with the box
census. `eval-cam` (training/evaluate_cli.py) is the command line around it.

A checkpoint runs through PyTorch; ONNX models and engines run through the runtime backends, so
what is measured is what will be deployed. torch is imported only for checkpoints.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli import BadValue, number, word_or
from runtime.config_cli import option
from runtime.confidence import DEFAULT_MIN_CONFIDENCE, SCORINGS, BoxPolicy
from runtime.backends.triton_backend import is_triton_uri
from runtime.errors import ConfigError, DataError
from runtime.evaluation import Predictions, evaluate, tune_box_settings
from runtime.geometry import PROJECTIONS
from runtime.postprocess import BoxSettings
from runtime.model_info import TRAINED_ON_KEYS, ModelInfo
from runtime.output_paths import writable_folder
from runtime.preprocess import chw_with_channels
from runtime.visualize import write_pictures

from .data.mnist128 import ALL_DIGITS, DEFAULT_GT_BOX
from .data.options import Mnist128Options
from .data.split_plan import SPLITS
from .data.registry import DATASET_HELP, load_splits

__all__ = ["EvalConfig", "EvaluatedModel", "evaluate_model", "load_for_eval", "splits_for_model", "format_table"]


class EvaluatedModel:
    """A model opened for evaluation: its metadata and a function split -> Predictions."""

    def __init__(self, path: Path, info: ModelInfo, predict_fn, trained_on: dict[str, Any]):
        self.path, self.info, self.predict, self.trained_on = path, info, predict_fn, trained_on


def load_for_eval(path: str | Path, *, batch_size: int = 32, device: str = "auto", progress: bool = True) -> EvaluatedModel:
    uri = str(path) if is_triton_uri(str(path)) else None  # a Triton model is a URI, not a file
    path = Path(path)
    if path.suffix == ".pt":
        from .checkpoint import load_model
        from .predict import predict
        from .train import flush_denormals, select_device

        model, payload = load_model(path)
        torch_device = select_device(device)
        model.to(torch_device)
        info = ModelInfo.from_checkpoint_parts(payload["config"], payload["deploy"])
        train_config = payload["extra"].get("train_config", {})
        trained_on = {key: train_config.get(key) for key in TRAINED_ON_KEYS}

        def run_torch(split) -> Predictions:
            with flush_denormals():  # a trained model's denormal weights would make CPU inference ~10x slower
                return predict(model, split, device=torch_device, batch_size=batch_size, progress=progress)[0]

        return EvaluatedModel(path, info, run_torch, trained_on)
    from runtime.backends import open_backend
    from runtime.scores import class_probabilities, pool_cams

    backend = open_backend(uri or path)

    def run(split) -> Predictions:
        from tqdm import tqdm

        cams, labels, boxes = [], [], []
        for start in tqdm(range(0, len(split), batch_size), desc="predict", leave=False, disable=not progress):
            samples = [split[i] for i in range(start, min(start + batch_size, len(split)))]
            batch = np.stack([chw_with_channels(s.image, backend.info.in_channels) for s in samples])
            cams.append(backend.infer(batch))
            labels += [s.labels for s in samples]
            boxes += [s.boxes for s in samples]
        cams = np.concatenate(cams)
        info = backend.info
        scores = class_probabilities(pool_cams(cams, info.pooling, info.spam_kernels), info.slopes, info.intercepts)
        return Predictions(cams, scores, np.stack(labels), boxes)

    return EvaluatedModel(path, backend.info, run, backend.info.trained_on)


def _mnist_positive(classes: list[str]) -> int | str:
    """MNIST128's task as the model's own classes say it: one digit, or all ten (the multi-class set)."""
    if list(classes) == [str(d) for d in range(10)]:
        return ALL_DIGITS
    return int(classes[0]) if len(classes) == 1 and str(classes[0]).isdigit() else 3


def splits_for_model(model: EvaluatedModel, dataset: str | None = None, *, sizes: dict[str, int] | None = None,
                     mnist_dir: str | None = None, seed: int | None = None, objects: tuple[int, int] | None = None,
                     mnist_box: str = DEFAULT_GT_BOX):
    """(the splits to test `model` on, the seed used). On the dataset the model was trained on,
    `mnist_dir`, `seed` and `objects` default to training's, so that the test split is the one
    training held out; on another dataset, to 0 and (1, 1)."""
    trained = model.trained_on
    dataset = dataset or trained["dataset"] or "embedded"
    if dataset == trained["dataset"]:
        mnist_dir = mnist_dir or trained["mnist_dir"]
        seed = trained["seed"] if seed is None else seed
        objects = tuple(trained["objects"]) if objects is None and trained["objects"] else objects
    seed = 0 if seed is None else int(seed)
    info = model.info
    splits = load_splits(dataset, seed=seed, input_size=tuple(info.input_size), channels=info.in_channels,
                         mnist_dir=mnist_dir, sizes=sizes, objects=tuple(objects or (1, 1)), mnist_box=mnist_box,
                         positive=_mnist_positive(info.classes))
    if list(splits.classes) != list(info.classes):
        raise DataError(f"the model's classes {info.classes} differ from the dataset's {splits.classes}")
    return splits, seed


def ratio_value(text) -> float:
    """--ratio: r in (-1, 1); r > 0 shrinks each projected field, r < 0 grows it."""
    value = number(float)(text)
    if not -1 < value < 1:
        raise BadValue(f"{text} is not in (-1, 1): r > 0 shrinks each field by that share, r < 0 grows it")
    return value


SAME = "same"  # --ratio-y same: heights take the widths' r (the paper's one r)


ratio_y_value = word_or(SAME, ratio_value, "or give 'same' (heights take the widths' r)")  # --ratio-y


def relative_floor_value(text) -> float:
    """--relative-floor: a share of each mountain's own peak, in [0, 1)."""
    value = number(float, minimum=0)(text)
    if value >= 1:
        raise BadValue(f"{text} is not below 1 (a mountain must keep its own peak)")
    return value


@dataclass(kw_only=True)
class EvalConfig(Mnist128Options):
    """How a model is evaluated; eval-cam's options are generated from these fields. The data
    defaults are the model's own (`splits_for_model`)."""

    dataset: str | None = option(None, f"{DATASET_HELP}; default: the one the model was trained on")
    split: str = option("test", "", choices=SPLITS)
    limit: int | None = option(None, "evaluate only the first N images of the split (and of the validation split "
                               "for --tune)", type=number(int, minimum=1), metavar="N")
    seed: int | None = option(None, "dataset seed (default: training's on its dataset, else 0; another seed draws "
                              "other MNIST128 splits)", type=number(int, minimum=0))
    tune: bool = option(False, "choose the projection, relative floor and r (and heights' own r where that localizes "
                        "better) on the validation split, boxes ranked as --score ranks them, and store them in the model "
                        "(train-cam does it after its last epoch); with --score confidence the confidence's form too "
                        "(instance or peak, docs/method.md)", flags=("--tune",),
                        old_flags=("--tune-ratio",))
    ratio: float | None = option(None, "evaluate with this r instead of the stored one (for widths and heights, "
                                 "unless --ratio-y)", type=ratio_value)
    ratio_y: float | str | None = option(None, "evaluate with this r for box heights ('same': the widths' r, the "
                                         "paper's one r; with --tune: choose one r for both)", type=ratio_y_value,
                                         metavar="R|same")
    projection: str | None = option(None, "evaluate with this projection instead of the stored one (with --tune: "
                                    "choose only r and the floor)", choices=list(PROJECTIONS))
    relative_floor: float | None = option(None, "evaluate with this relative floor instead of the stored one (with "
                                          "--tune: choose only r and the projection)", type=relative_floor_value,
                                          metavar="SHARE")
    tolerance: float = option(0.0, "pin-pointing tolerance in pixels (18 for VOC)", type=number(float, minimum=0))
    method: str = option("fast", "post-processing implementation", choices=["fast", "reference"])
    scoring: str = option("confidence", "rank boxes by their confidence, P(present) of the instance (default), or by "
                          "the raw CAM peak (the paper's, for Table 1)", flags=("--score",), choices=SCORINGS)
    min_confidence: float | None = option(None, "keep only boxes of confidence >= C whose class's image-level "
                                          "P(present) is >= C too (default: all; edge_app keeps "
                                          f">= {DEFAULT_MIN_CONFIDENCE})", flags=("--conf",),
                                          type=number(float, minimum=0), metavar="C")
    overlap_iou: float | None = option(None, "of boxes of different classes overlapping by IoU >= IOU, keep the most "
                                       "confident", type=number(float, above=0), metavar="IOU")
    maxboxacc: bool = option(False, "also compute MaxBoxAccV2 (Choe et al. 2020)")
    save_vis: str | None = option(None, "write pictures: CAM heat map, back-projected area, boxes (green = matches "
                                  "ground truth, red = not)", metavar="DIR")
    vis_count: int = option(16, "pictures --save-vis writes", type=number(int, minimum=1))
    batch_size: int = option(32, "", type=number(int, minimum=1))
    device: str = option("auto", "for checkpoints: auto, cpu, cuda")
    progress: bool = option(True, "no progress bars (logs, CI)", switch="--no-progress")
    write_settings: bool = option(True, "with tune: store the chosen settings in the model file", cli=False)
    tune_limit: int | None = option(None, "with tune: cap the validation split alone", cli=False)


def evaluate_model(model_path: str | Path, config: EvalConfig | None = None, **settings: Any) -> dict[str, Any]:
    """Evaluate and return the metrics; with `tune`, pick r on the validation split first (and store it).
    `settings` are `EvalConfig`'s fields (`limit=500, tune=True`), applied over `config`."""
    config = dataclasses.replace(config or EvalConfig(), **settings)
    return _evaluate(model_path, config)


def _evaluate(model_path: str | Path, c: EvalConfig) -> dict[str, Any]:
    model = load_for_eval(model_path, batch_size=c.batch_size, device=c.device, progress=c.progress)
    if c.tune and c.write_settings and is_triton_uri(str(model_path)):
        raise ConfigError("--tune stores the chosen settings in the model's file; a triton:// model's live in its "
                          "repository: tune the ONNX model or engine, then export-triton it again")
    if c.tune and c.write_settings:  # stored into the model's own file: say now if that cannot be written
        writable_folder(Path(model_path).parent, "--tune (stores the chosen settings in the model)")
    info = model.info
    sizes = {c.split: c.limit} if c.limit else {}
    if c.tune and (c.tune_limit or c.limit):
        sizes["val"] = c.tune_limit or c.limit
    splits, seed = splits_for_model(model, c.dataset, sizes=sizes or None, mnist_dir=c.mnist_dir, seed=c.seed,
                                    objects=c.objects, mnist_box=c.mnist_box)
    given = {name: value for name, value in (("projection", c.projection), ("relative_floor", c.relative_floor),
                                             ("ratio", c.ratio)) if value is not None}
    if c.ratio is not None or c.ratio_y is not None:  # a given r is for both axes unless heights get their own
        given["ratio_y"] = None if c.ratio_y in (None, SAME) else c.ratio_y
    settings = BoxSettings(**(BoxSettings.of(info).fields() | given))
    curve = None
    if c.tune:
        choices = {"projections": (settings.projection,)} if c.projection is not None else {}
        if c.relative_floor is not None:
            choices["relative_floors"] = (settings.relative_floor,)
        if c.ratio_y == SAME:
            choices["separate_heights"] = False
        tuning_head = info.classifier_head() if c.scoring == "confidence" else None  # tuned as it is ranked
        settings, curve = tune_box_settings(model.predict(splits.val), info.localizer_params(), head=tuning_head,
                                            **choices)
        if tuning_head is None:  # tuned by the peak: the confidence's form is not chosen, the stored one stays
            settings = settings.with_confidence_form_of(BoxSettings.of(info))
        if c.write_settings:
            _store_box_settings(model.path, settings)
    info = info.with_box_settings(settings)
    params = info.localizer_params()
    data = getattr(splits, c.split)
    predictions = model.predict(data)
    policy = BoxPolicy(scoring=c.scoring, min_confidence=c.min_confidence, overlap_iou=c.overlap_iou)
    result = evaluate(predictions, params, tolerance=c.tolerance, method=c.method, with_maxboxacc=c.maxboxacc,
                      head=info.classifier_head(), policy=policy)
    detections = result.pop("_detections")
    if c.save_vis:  # a picture that cannot be written must not cost the metrics: say it, keep them
        result["pictures_written"], result["pictures_error"] = write_pictures(
            Path(c.save_vis), _LazyImages(data), predictions.cams, detections, predictions.boxes, predictions.labels,
            params, info.classes, c.vis_count)
    result.update({"model": str(model_path), "dataset": splits.description, "split": c.split, "seed": seed, "classes": info.classes,
                   "pooling": info.pooling, "backbone": info.backbone})
    result.update(settings.fields())
    if curve is not None:
        result["tuning_curve"] = [{"projection": p, "relative_floor": f, "ratio": r, "ratio_y": ry, "extent_ap": a}
                                  for p, f, r, ry, a in curve]
    return result


def _store_box_settings(path: Path, settings: BoxSettings) -> None:
    if path.suffix == ".pt":
        from .checkpoint import load_model, save_checkpoint

        model, payload = load_model(path)
        for name, value in settings.fields().items():
            setattr(model.config, name, value)
        save_checkpoint(path, model, extra=payload["extra"], training_state=payload.get("training_state"))
    else:
        from runtime.backends import store_box_settings

        store_box_settings(path, settings)


class _LazyImages:
    """A split's images, read when a picture needs one: evaluation keeps no images in memory."""

    def __init__(self, split) -> None:
        self.split = split

    def __getitem__(self, index: int) -> np.ndarray:
        return self.split[index].image


def format_table(result: dict[str, Any]) -> str:
    """Paper Table 1's shape: one row, mAP in percent."""
    name = f"{result['pooling'].upper()} ({result['backbone']})"
    header = f"{'Method':<22}{'Classification':>16}{'Pin-pointing':>14}{'Extent':>9}{'Extent 11pt':>13}"
    row = (f"{name:<22}{100 * result['classification_ap_mean']:>16.1f}{100 * result['pinpoint_ap_mean']:>14.1f}"
           f"{100 * result['extent_ap_mean']:>9.1f}{100 * result['extent_ap_11pt_mean']:>13.1f}")
    lines = [header, "-" * len(header), row]
    if "MaxBoxAccV2" in result:
        lines.append(f"MaxBoxAccV2 {100 * result['MaxBoxAccV2']:.1f}  (" + ", ".join(
            f"{k.split('@')[1]}: {100 * v:.1f}" for k, v in result.items() if k.startswith("MaxBoxAcc@")) + ")")
    lines.append(f"boxes ranked by {result.get('scoring', 'peak')}: {result['detections_per_image']:.2f} per image; "
                 f"{100 * result['wrong_class_rate']:.1f}% on an object of another class, "
                 f"{100 * result['background_rate']:.1f}% on no object, "
                 f"{100 * result['absent_class_rate']:.1f}% of a class the image does not have; "
                 f"{100 * result['missed_rate']:.1f}% of "
                 f"{result['objects']} objects missed")
    if len(result["classes"]) > 1:  # per class: which classes carry the mean, which drag it down
        lines.append("extent AP per class: " + ", ".join(
            f"{name} {100 * ap:.1f}" for name, ap in zip(result["classes"], result["extent_ap"])))
    lines.append(f"{result['images']} images ({result['dataset']}, {result['split']} split, seed {result.get('seed', 0)}), "
                 f"{BoxSettings.from_fields(result).describe()}")
    return "\n".join(lines)
