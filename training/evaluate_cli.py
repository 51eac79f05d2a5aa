"""`eval-cam`: Table 1's numbers (classification / pin-pointing / extent AP) for a checkpoint, an ONNX
model or a TensorRT engine, on MNIST128, the embedded digits or an image-level/VOC dataset.

A checkpoint runs through PyTorch; ONNX models and engines run through the runtime backends, so
what is measured is what will be deployed. torch is imported only for checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.confidence import SCORINGS, BoxPolicy
from runtime.preprocess import chw_with_channels
from runtime.evaluation import DEFAULT_RATIOS, Predictions, evaluate, tune_ratio
from runtime.model_info import TRAINED_ON_KEYS, ModelInfo

from .data.mnist128 import ALL_DIGITS, DEFAULT_GT_BOX, GT_BOXES
from .data.registry import DATASET_HELP, load_splits
from runtime.cli import EXIT_OUTPUT_FAILED, min_max, number, run_cli
from runtime.errors import DataError, NotFoundError, WriteError
from runtime.output_paths import writable_file, writable_folder, write_text_atomic

__all__ = ["evaluate_model", "load_for_eval", "main"]

EXAMPLES = """examples:
  eval-cam runs/cam/ckpt.pt                         # the dataset it was trained on, test split
  eval-cam runs/cam/ckpt.pt --tune-ratio            # pick r on the validation split, store it in the checkpoint
  eval-cam model.onnx --dataset mnist128 --json results.json
  eval-cam model.int8.onnx --dataset mnist128 --maxboxacc
  eval-cam runs/cam/ckpt.pt --save-vis vis/ --vis-count 24   # heat map, back-projection, boxes
"""


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
        result["pictures_written"], result["pictures_error"] = _save_pictures(
            Path(save_vis), data, predictions, detections, info, vis_count)
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


def _save_pictures(folder: Path, data, predictions: Predictions, detections, info: ModelInfo,
                   count: int) -> tuple[int, str | None]:
    """One PNG per example and a contact sheet of them all, every heat map on the model's own fixed scale.
    Returns how many were written and, when writing stopped (full disk, read-only folder), why."""
    from runtime.visualize import contact_sheet, heat_scale, legend, render_example, write_png

    params = info.localizer_params()
    scale = heat_scale(predictions.cams)
    # Most informative first: images that contain a class, then the rest.
    order = sorted(range(len(predictions.labels)), key=lambda i: -float(predictions.labels[i].sum()))[:count]
    tiles = []
    try:
        writable_folder(folder, "--save-vis")
        for i in order:
            tile = render_example(data[i].image, predictions.cams[i], detections[i], params, info.classes,  # re-read:
                                  gt_boxes=predictions.boxes[i], scale=scale)  # no images kept
            write_png(folder / f"{i:05d}.png", tile)
            tiles.append(tile)
        if tiles:
            write_png(folder / "contact_sheet.png",
                      contact_sheet(tiles, columns=min(6, len(tiles)), caption=legend(scale, "box confidence (P(present) of the instance)")))
    except WriteError as error:
        return len(tiles), str(error)
    return len(tiles) + bool(tiles), None


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-cam", description="Evaluate a CAM localizer: classification, pin-pointing "
                                "and extent AP (paper Table 1), optionally MaxBoxAccV2.", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ckpt.pt (PyTorch), model.onnx (ONNX Runtime) or model.engine (TensorRT)")
    p.add_argument("--dataset", help=f"{DATASET_HELP}; default: the one the model was trained on")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=number(int, minimum=1), help="evaluate only the first N images of the split")
    p.add_argument("--mnist-dir", help="MNIST IDX folder for --dataset mnist128 (default: the one the model was trained on)")
    p.add_argument("--objects", type=min_max, metavar="MIN,MAX", help="MIN,MAX digits per MNIST128 canvas (default: training's, else 1,1)")
    p.add_argument("--mnist-box", default=DEFAULT_GT_BOX, choices=GT_BOXES,
                   help="MNIST128 ground truth: the pasted 28x28 patch (default) or the digit's tight ink box")
    p.add_argument("--seed", type=number(int, minimum=0), help="dataset seed (default: training's on its dataset, else 0; another seed "
                   "draws other MNIST128 splits)")
    p.add_argument("--tune-ratio", action="store_true", help="choose r on the validation split and store it in the model")
    p.add_argument("--ratio", type=number(float, above=0), help="evaluate with this r instead of the stored one")
    p.add_argument("--tolerance", type=number(float, minimum=0), default=0.0, help="pin-pointing tolerance in pixels (18 for VOC)")
    p.add_argument("--method", default="fast", choices=["fast", "reference"], help="post-processing implementation")
    p.add_argument("--score", default="confidence", choices=SCORINGS,
                   help="rank boxes by their confidence, P(present) of the instance (default), or by the raw CAM peak "
                   "(the paper's, for Table 1)")
    p.add_argument("--conf", type=number(float, minimum=0), metavar="C",
                   help="keep only boxes of confidence >= C (default: all; edge_app keeps >= 0.5)")
    p.add_argument("--overlap-iou", type=number(float, above=0), metavar="IOU",
                   help="of boxes of different classes overlapping by IoU >= IOU, keep the most confident")
    p.add_argument("--maxboxacc", action="store_true", help="also compute MaxBoxAccV2 (Choe et al. 2020)")
    p.add_argument("--json", help="write all metrics to this JSON file")
    p.add_argument("--save-vis", metavar="DIR", help="write pictures: CAM heat map, back-projected area, boxes "
                   "(green = matches ground truth, red = not)")
    p.add_argument("--vis-count", type=number(int, minimum=1), default=16, help="pictures --save-vis writes")
    p.add_argument("--batch-size", type=number(int, minimum=1), default=32)
    p.add_argument("--device", default="auto", help="for checkpoints: auto, cpu, cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        if not Path(args.model).is_file():  # before the outputs are checked: they must not be made for nothing
            raise NotFoundError(f"{args.model}: no such model file")
        json_target = writable_file(args.json, "--json") if args.json else None  # before the evaluation, not after
        if args.save_vis:
            writable_folder(args.save_vis, "--save-vis")
        result = evaluate_model(args.model, dataset=args.dataset, split=args.split, limit=args.limit,
                                tune=args.tune_ratio, ratio=args.ratio, tolerance=args.tolerance, method=args.method,
                                maxboxacc=args.maxboxacc, mnist_dir=args.mnist_dir, seed=args.seed, objects=args.objects,
                                save_vis=args.save_vis, vis_count=args.vis_count, batch_size=args.batch_size,
                                device=args.device, mnist_box=args.mnist_box, progress=not args.no_progress,
                                scoring=args.score, min_confidence=args.conf, overlap_iou=args.overlap_iou)
        print(format_table(result))
        if args.tune_ratio:
            print(f"eval-cam: r = {result['ratio']:g} chosen on the validation split and stored in {args.model}")
        if json_target:
            write_text_atomic(json_target, json.dumps(result, indent=2, default=float))
            print(f"eval-cam: metrics written to {json_target}")
        if args.save_vis:
            print(f"eval-cam: {result['pictures_written']} pictures written to {args.save_vis}")
            if result["pictures_error"]:
                print(f"eval-cam: error: the pictures stopped there: {result['pictures_error']}", file=sys.stderr)
                return EXIT_OUTPUT_FAILED
        return 0

    return run_cli("eval-cam", work, interrupted="nothing was written (the model's stored r is unchanged)")


if __name__ == "__main__":
    sys.exit(main())
