"""Boxes from the backbones users deploy: resnet18 and mobilenet_v3_large + SPAM on shapes on clutter.

Issue 11, item 4. Each backbone is trained from scratch with train-cam's defaults for the settings it
chooses itself (`--projection auto --relative-floor auto`: chosen with r on the validation split after
the last epoch), at CAM stride 16 (`--output-stride 16`), several seeds. The test split is scored
from the same CAMs with each way of making boxes, its settings tuned on the validation split:
- paper: Algorithm 1 as the paper has it (theoretical receptive field, floor 0), r tuned;
- theoretical + floor: the same with the relative floor tuned too;
- interpolated, interpolated + floor: the interpolated projection, floor 0 or tuned;
- chosen: everything chosen together, as train-cam chooses it (the confidence's form too), ranked by
  confidence; and "chosen, ranked by peak": the same choice made and scored with the raw CAM peak's
  ranking (the paper's).
Boxes are ranked by confidence unless said, and every setting is tuned for the ranking it is scored
with. Prints mean ± sd over seeds.

    python benchmarks/deep_backbones.py [--backbones resnet18,mobilenet_v3_large] [--seeds 0,1,2] [--epochs 8]
    python benchmarks/deep_backbones.py --rescore      # score the checkpoints in --runs again
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from _help import Formatter
from _runs import add_memory_format

OBJECTS = (1, 3)
COLUMNS = ("classification_ap_mean", "pinpoint_ap_mean", "extent_ap_mean", "wrong_class_rate", "detections_per_image",
           "missed_rate")
HEADINGS = {"classification_ap_mean": "classification", "pinpoint_ap_mean": "pin-pointing", "extent_ap_mean": "extent",
            "wrong_class_rate": "wrong-class boxes %", "detections_per_image": "boxes / image",
            "missed_rate": "missed objects %"}


ONE_R = {"separate_heights": False}
VARIANTS = {  # name: what tune_box_settings may choose from on validation ({}: everything, as train-cam does)
    "paper": {"projections": ("theoretical",), "relative_floors": (0.0,), **ONE_R},
    "theoretical + floor": {"projections": ("theoretical",), **ONE_R},
    "interpolated": {"projections": ("interpolated",), "relative_floors": (0.0,), **ONE_R},
    "interpolated + floor": {"projections": ("interpolated",), **ONE_R},
    "chosen, one r": ONE_R,
}


def train_and_score(backbone: str, seed: int, runs: str, schedule: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from training.train import TrainConfig, train

    started = time.time()
    record = train(TrainConfig(dataset="shapes", objects=OBJECTS, backbone=backbone, pooling="spam", seed=seed,
                               out=str(Path(runs) / f"{backbone}_s{seed}"), progress=False, overwrite=True,
                               **schedule))
    result = score(record["checkpoint"], seed)
    result["minutes"] = round((time.time() - started) / 60, 2)
    return result


def score(checkpoint: str, seed: int) -> dict:
    """The test split scored from one set of CAMs: with the settings train-cam chooses ("chosen") and
    with each projection, floor 0 or tuned, and one r (VARIANTS), each tuned on the validation split.
    "chosen" is chosen here again, by the function train-cam calls on the same validation split, so
    that --rescore follows the current chooser (a checkpoint keeps what its train-cam chose)."""
    import torch

    torch.set_num_threads(1)
    from runtime.confidence import BoxPolicy
    from runtime.evaluation import RatioTuningError, evaluate, tune_box_settings
    from runtime.postprocess import BoxSettings
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import classifier_head, localizer_params, predict
    from training.train import flush_denormals

    model, _ = load_model(checkpoint)
    splits = load_splits("shapes", objects=OBJECTS, seed=seed, input_size=model.config.input_size)
    with flush_denormals():
        val, test = predict(model, splits.val)[0], predict(model, splits.test)[0]
    chosen = localizer_params(model)
    head = classifier_head(model)
    choices = {**VARIANTS, "chosen": {}, "chosen, ranked by peak": {}}
    rankings = {name: head for name in choices} | {"chosen, ranked by peak": None}  # None: by the raw peak
    settings = {}
    for name, ranking in rankings.items():  # each tuned for the ranking it is scored with
        try:
            settings[name], _ = tune_box_settings(val, chosen, head=ranking, **choices[name])
        except RatioTuningError:  # nothing localized on validation: the paper's r = 0, as train-cam keeps it
            settings[name] = BoxSettings()
    result = {"backbone": model.config.backbone, "seed": seed, "checkpoint": str(checkpoint)}
    for name, chosen_settings in settings.items():
        ranking = rankings[name] and rankings[name].for_settings(chosen_settings)  # the confidence form chosen too
        metrics = evaluate(test, chosen_settings.applied(chosen), head=ranking, policy=BoxPolicy())
        result[name] = {k: float(metrics[k]) for k in COLUMNS} | {"settings": chosen_settings.fields()}
    print(f"deep_backbones: {result['backbone']} seed {seed}: extent AP " + ", ".join(
        f"{name} {100 * result[name]['extent_ap_mean']:.1f}" for name in settings), flush=True)
    return result


def mean_sd(values, scale: float) -> str:
    values = scale * np.asarray(values, dtype=np.float64)
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}"


ROWS = ("paper", "theoretical + floor", "interpolated", "interpolated + floor", "chosen, one r", "chosen",
        "chosen, ranked by peak")


def _ratios(settings: dict) -> str:
    """"0.1", or "0.1 x 0.15" where heights have their own r; ", by peak" where the confidence has the peak form."""
    form = "" if settings.get("confidence_peak_scales") is None else ", by peak"
    if settings.get("ratio_y") is None:
        return f"{settings['ratio']:g}{form}"
    return f"{settings['ratio']:g} x {settings['ratio_y']:g}{form}"


def table(results: list[dict]) -> str:
    lines = ["| backbone | boxes | settings per seed (projection, floor, r) | "
             + " | ".join(HEADINGS[c] for c in COLUMNS) + " |", "|" + " --- |" * (3 + len(COLUMNS))]
    for backbone in dict.fromkeys(r["backbone"] for r in results):
        runs = sorted((r for r in results if r["backbone"] == backbone), key=lambda r: r["seed"])
        for name in (row for row in ROWS if all(row in r for r in runs)):
            settings = "; ".join(f"{s['projection'][:6]}, {s['relative_floor']:g}, {_ratios(s)}"
                                 for s in (r[name]["settings"] for r in runs))
            cells = [mean_sd([r[name][c] for r in runs], 1.0 if c == "detections_per_image" else 100.0)
                     for c in COLUMNS]
            lines.append(f"| {backbone} ({len(runs)} seeds) | {name} | {settings} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--backbones", default="resnet18,mobilenet_v3_large", help="comma-separated backbones to train")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds, each a model per backbone")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per model")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (train-cam --lr)")
    parser.add_argument("--output-stride", type=int, default=16, help="the CAM's stride (train-cam --output-stride)")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="models trained at once, one thread each")
    add_memory_format(parser)
    parser.add_argument("--runs", default="runs/deep_backbones", help="folder for the checkpoints and deep_backbones.json")
    parser.add_argument("--rescore", action="store_true",
                        help="score the checkpoints already in --runs again (every variant), without training")
    args = parser.parse_args()
    import torch

    schedule = {"epochs": args.epochs, "lr": args.lr, "output_stride": args.output_stride,
                "memory_format": args.memory_format}
    seeds = [int(s) for s in args.seeds.split(",")]
    backbones = args.backbones.split(",")
    started = time.time()
    os.environ["OMP_NUM_THREADS"] = "1"
    results: list[dict] = []
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        if args.rescore:
            futures = [pool.submit(score, str(Path(args.runs) / f"{b}_s{s}" / "ckpt.pt"), s) for s in seeds
                       for b in backbones if (Path(args.runs) / f"{b}_s{s}" / "ckpt.pt").is_file()]
        else:
            futures = [pool.submit(train_and_score, b, s, args.runs, schedule) for s in seeds for b in backbones]
        for future in as_completed(futures):
            results.append(future.result())
            text = table(results)  # after every model: an interrupted benchmark keeps what it measured
            summary = {"schedule": schedule, "seeds": seeds, "minutes": round((time.time() - started) / 60, 1),
                       "torch": torch.__version__, "results": results, "table": text,
                       "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores, "
                                  f"{args.jobs} jobs x 1 thread"}
            (Path(args.runs) / "deep_backbones.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"\nShapes on clutter (6 classes, 1-3 per image), SPAM, stride {args.output_stride}, mean ± sd over seeds "
          f"{args.seeds}\n{text}")
    print(f"deep_backbones: {(time.time() - started) / 60:.1f} minutes; results in "
          f"{Path(args.runs) / 'deep_backbones.json'}")


if __name__ == "__main__":
    main()
