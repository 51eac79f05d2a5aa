"""Evaluation as a library: open a checkpoint, ONNX model or TensorRT engine, pick the data it should
be tested on, and measure Table 1's numbers (classification / pin-pointing / extent AP) with the box
census. `eval-cam` (training/evaluate_cli.py) is the command line around it.

A checkpoint runs through PyTorch; ONNX models and engines run through the runtime backends, so
what is measured is what will be deployed. torch is imported only for checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.confidence import BoxPolicy
from runtime.errors import DataError
from runtime.evaluation import DEFAULT_RATIOS, Predictions, evaluate, tune_ratio
from runtime.model_info import TRAINED_ON_KEYS, ModelInfo
from runtime.output_paths import writable_folder
from runtime.preprocess import chw_with_channels
from runtime.visualize import write_pictures

from .data.mnist128 import ALL_DIGITS, DEFAULT_GT_BOX
from .data.registry import load_splits

__all__ = ["EvaluatedModel", "evaluate_model", "load_for_eval", "splits_for_model", "format_table"]


class EvaluatedModel:
    """A model opened for evaluation: its metadata and a function split -> Predictions."""

    def __init__(self, path: Path, info: ModelInfo, predict_fn, trained_on: dict[str, Any]):
        self.path, self.info, self.predict, self.trained_on = path, info, predict_fn, trained_on


def load_for_eval(path: str | Path, *, batch_size: int = 32, device: str = "auto", progress: bool = True) -> EvaluatedModel:
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

    backend = open_backend(path)

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


def evaluate_model(
    model_path: str | Path, *, dataset: str | None = None, split: str = "test", limit: int | None = None,
    tune: bool = False, ratio: float | None = None, tolerance: float = 0.0, method: str = "fast",
    maxboxacc: bool = False, mnist_dir: str | None = None, seed: int | None = None, objects: tuple[int, int] | None = None,
    save_vis: str | None = None, vis_count: int = 16, batch_size: int = 32, device: str = "auto",
    write_ratio: bool = True, tune_limit: int | None = None, progress: bool = True, mnist_box: str = DEFAULT_GT_BOX,
    scoring: str = "confidence", min_confidence: float | None = None, overlap_iou: float | None = None,
) -> dict[str, Any]:
    """Evaluate and return the metrics; with `tune`, pick r on the validation split first (and store it).
    `limit` caps the evaluated split (and the validation split); `tune_limit` caps the validation split alone.
    The data defaults as in `splits_for_model`."""
    model = load_for_eval(model_path, batch_size=batch_size, device=device, progress=progress)
    if tune and write_ratio:  # r is stored into the model's own file: say now if that cannot be written
        writable_folder(Path(model_path).parent, "--tune-ratio (stores r next to the model)")
    info = model.info
    sizes = {split: limit} if limit else {}
    if tune and (tune_limit or limit):
        sizes["val"] = tune_limit or limit
    splits, seed = splits_for_model(model, dataset, sizes=sizes or None, mnist_dir=mnist_dir, seed=seed,
                                    objects=objects, mnist_box=mnist_box)
    params = info.localizer_params()
    curve = None
    if tune:
        best, curve = tune_ratio(model.predict(splits.val), params, DEFAULT_RATIOS)
        info.ratio = params.ratio = best
        if write_ratio:
            _store_ratio(model.path, best)
    elif ratio is not None:
        info.ratio = params.ratio = float(ratio)
    data = getattr(splits, split)
    predictions = model.predict(data)
    policy = BoxPolicy(scoring=scoring, min_confidence=min_confidence, overlap_iou=overlap_iou)
    result = evaluate(predictions, params, tolerance=tolerance, method=method, with_maxboxacc=maxboxacc,
                      head=info.classifier_head(), policy=policy)
    detections = result.pop("_detections")
    if save_vis:  # a picture that cannot be written must not cost the metrics: say it, keep them
        result["pictures_written"], result["pictures_error"] = write_pictures(
            Path(save_vis), _LazyImages(data), predictions.cams, detections, predictions.boxes, predictions.labels,
            params, info.classes, vis_count)
    result.update({"model": str(model_path), "dataset": splits.description, "split": split, "seed": seed, "classes": info.classes,
                   "pooling": info.pooling, "backbone": info.backbone})
    if curve is not None:
        result["ratio_curve"] = curve
    return result


def _store_ratio(path: Path, ratio: float) -> None:
    if path.suffix == ".pt":
        from .checkpoint import load_model, save_checkpoint

        model, payload = load_model(path)
        model.config.ratio = ratio
        save_checkpoint(path, model, extra=payload["extra"], training_state=payload.get("training_state"))
    else:
        from runtime.backends import store_ratio

        store_ratio(path, ratio)


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
                 f"{100 * result['background_rate']:.1f}% on no object; {100 * result['missed_rate']:.1f}% of "
                 f"{result['objects']} objects missed")
    if len(result["classes"]) > 1:  # per class: which classes carry the mean, which drag it down
        lines.append("extent AP per class: " + ", ".join(
            f"{name} {100 * ap:.1f}" for name, ap in zip(result["classes"], result["extent_ap"])))
    lines.append(f"{result['images']} images ({result['dataset']}, {result['split']} split, seed {result.get('seed', 0)}), "
                 f"r = {result['ratio']:g}")
    return "\n".join(lines)
