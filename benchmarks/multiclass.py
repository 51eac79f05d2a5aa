"""Multi-class MNIST128: all ten digits as classes, 1-3 non-overlapping digits per canvas.

A benchmark nobody tuned spamcam for (issue 11): GMP, GAP and SPAM on LeNet, the same data as
benchmarks/table1.py and its schedule but for the number of epochs (5, not 8: ~45 minutes on 2 cores),
over several seeds. r is tuned on the validation split for each ranking; the test split is scored three
ways from the same CAMs:
- peak:       boxes ranked by their raw CAM peak, every box kept, r tuned so (the paper's protocol);
- confidence: ranked by the box's confidence, P(present) of the instance (runtime/confidence.py), with
              the r train-cam tuned so on the same validation canvases;
- deployed:   confidence ranking, boxes below 0.5 dropped and one class per object (edge_app's defaults).
Each reports classification / pin-pointing / extent AP (patch ground truth), MaxBoxAccV2, the share of
boxes on an object of another class, boxes per image and missed objects. Prints mean +- sd over seeds.

    python benchmarks/multiclass.py [--seeds 0,1,2,3,4] [--epochs 5] [--jobs 2] [--runs runs/multiclass]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

from _help import Formatter, comma_subset
from _runs import add_memory_format, paper_boxes

POOLINGS = ("gmp", "gap", "spam")
SLOWEST_FIRST = ("gap", "spam", "gmp")  # GAP's boxes take longest to score: started first, two jobs end together
OBJECTS = (1, 3)
VAL_FOR_TUNING = 1000  # the validation canvases train-cam tunes on (limits) and the peak's r is tuned on
EPOCHS = 5  # table1's 8 took ~65 minutes for 15 models on 2 cores (a LeNet step ~0.13 s); 5 fit ~45
TEST_CANVASES = 3000  # of the 10,000 test digits' canvases: the scoring, not the training, sets the wall time
SCORINGS = {"peak": None, "confidence": {}, "deployed": {"min_confidence": 0.5, "overlap_iou": 0.5}}
COLUMNS = ("classification_ap_mean", "pinpoint_ap_mean", "extent_ap_mean", "MaxBoxAccV2", "wrong_class_rate",
           "detections_per_image", "missed_rate")


def train_and_score(pooling: str, seed: int, runs: str, schedule: dict, mnist_dir: str, test_canvases: int,
                    maxboxacc: bool) -> dict:
    import torch

    torch.set_num_threads(1)
    from runtime.confidence import BoxPolicy
    from runtime.evaluation import RatioTuningError, evaluate, tune_ratio
    from runtime.postprocess import BoxSettings
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import classifier_head, localizer_params, predict
    from training.train import TrainConfig, flush_denormals, train

    started = time.time()
    out = Path(runs) / f"{pooling}_s{seed}"
    record = train(TrainConfig(**(paper_boxes() | schedule), dataset="mnist128", positive="all", objects=OBJECTS,
                               pooling=pooling, seed=seed, out=str(out), progress=False, overwrite=True,
                               mnist_dir=mnist_dir, limits={"val": VAL_FOR_TUNING}))
    model, _ = load_model(record["checkpoint"])
    splits = load_splits("mnist128", positive="all", objects=OBJECTS, seed=seed, mnist_dir=mnist_dir,
                         sizes={"val": VAL_FOR_TUNING, "test": test_canvases})
    with flush_denormals():
        val, test = predict(model, splits.val)[0], predict(model, splits.test)[0]
    chosen = localizer_params(model)  # r as train-cam tuned it on these 1,000 canvases, boxes ranked by confidence
    by_peak = chosen
    try:  # the paper's protocol: r tuned for the peak's own ranking
        by_peak = replace(chosen, ratio=tune_ratio(val, chosen)[0])
    except RatioTuningError:
        pass
    head = classifier_head(model)
    result = {"pooling": pooling, "seed": seed, "ratio": chosen.ratio, "ratio_by_peak": by_peak.ratio,
              "confidence_form": BoxSettings.of(model.config).confidence_form,
              "checkpoint": record["checkpoint"]}
    for name, policy in SCORINGS.items():
        params = by_peak if policy is None else chosen
        metrics = evaluate(test, params, head=None if policy is None else head,
                           policy=BoxPolicy(**(policy or {})), with_maxboxacc=maxboxacc and name == "confidence")
        result[name] = {k: float(metrics[k]) for k in COLUMNS if k in metrics}
        result[name]["extent_ap_per_class"] = [float(v) for v in metrics["extent_ap"]]
    result["minutes"] = round((time.time() - started) / 60, 2)
    print(f"multiclass: {pooling} seed {seed} in {result['minutes']:.1f} min: extent AP peak "
          f"{100 * result['peak']['extent_ap_mean']:.1f}, confidence {100 * result['confidence']['extent_ap_mean']:.1f}, "
          f"deployed {100 * result['deployed']['extent_ap_mean']:.1f}; wrong-class boxes peak "
          f"{100 * result['peak']['wrong_class_rate']:.1f}% -> deployed {100 * result['deployed']['wrong_class_rate']:.1f}%",
          flush=True)
    return result


def mean_sd(values, scale: float = 100.0) -> str:
    values = scale * np.asarray(values, dtype=np.float64)
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}"


HEADINGS = {"classification_ap_mean": "classification", "pinpoint_ap_mean": "pin-pointing",
            "extent_ap_mean": "extent (patch)", "MaxBoxAccV2": "MaxBoxAccV2", "wrong_class_rate": "wrong-class boxes %",
            "detections_per_image": "boxes / image", "missed_rate": "missed objects %"}


def table(results: list[dict]) -> str:
    columns = [c for c in COLUMNS if any(c in r[s] for r in results for s in SCORINGS)]  # MaxBoxAccV2 is optional
    lines = ["| pooling | scoring | " + " | ".join(HEADINGS[c] for c in columns) + " |", "|" + " --- |" * (2 + len(columns))]
    for pooling in POOLINGS:
        runs = [r for r in results if r["pooling"] == pooling]
        if not runs:
            continue
        for scoring in SCORINGS:
            cells = []
            for column in columns:
                values = [r[scoring][column] for r in runs if column in r[scoring]]
                cells.append("" if not values else mean_sd(values, 1.0 if column == "detections_per_image" else 100.0))
            lines.append(f"| {pooling.upper()} | {scoring} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds, each a model per pooling")
    parser.add_argument("--poolings", default=",".join(POOLINGS), type=comma_subset(POOLINGS),
                        help="comma-separated poolings to train")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs per model (table1 trains 8)")
    parser.add_argument("--epoch-samples", type=int, default=14000, help="canvases drawn per epoch")
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (train-cam --lr)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="train-cam --weight-decay")
    parser.add_argument("--warmup-epochs", type=float, default=0.5, help="train-cam --warmup-epochs")
    parser.add_argument("--output-lr-scale", type=float, default=10.0, help="train-cam --output-lr-scale")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="models trained at once, one thread each")
    add_memory_format(parser)
    parser.add_argument("--confidence-form", default=paper_boxes()["confidence_form"],
                        choices=("auto", "instance", "peak"),
                        help="train-cam --confidence-form (docs/results.md's table was measured with the instance form; "
                             "auto lets each model choose on validation, as train-cam's default does)")
    parser.add_argument("--test-canvases", type=int, default=TEST_CANVASES, help="test canvases scored per model")
    parser.add_argument("--maxboxacc", action="store_true", help="also MaxBoxAccV2 (minutes per model on 2 cores)")
    parser.add_argument("--runs", default="runs/multiclass", help="folder for the checkpoints and multiclass.json")
    parser.add_argument("--table-from", nargs="+", metavar="JSON",
                        help="only print the table of earlier runs' multiclass.json files, merged")
    args = parser.parse_args()
    if args.table_from:
        merged = [json.loads(Path(f).read_text()) for f in args.table_from]
        results = [r for m in merged for r in m["results"]]
        seeds = sorted({r["seed"] for r in results})
        print(f"Multi-class MNIST128 (10 classes, 1-3 digits), mean ± sd over seeds {seeds}; "
              f"{sum(m['minutes'] for m in merged):.1f} minutes in all\n{table(results)}")
        return
    import torch

    from training.data.mnist_source import fetch_full_mnist

    mnist_dir = str(fetch_full_mnist())
    schedule = {"epochs": args.epochs, "epoch_samples": args.epoch_samples, "lr": args.lr,
                "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
                "output_lr_scale": args.output_lr_scale, "memory_format": args.memory_format,
                "confidence_form": args.confidence_form}
    seeds = [int(s) for s in args.seeds.split(",")]
    poolings = args.poolings
    started = time.time()
    os.environ["OMP_NUM_THREADS"] = "1"
    results: list[dict] = []
    Path(args.runs).mkdir(parents=True, exist_ok=True)

    def save() -> str:  # after every finished model: an interrupted benchmark keeps what it measured
        text = table(results)
        summary = {"schedule": schedule, "seeds": seeds, "minutes": round((time.time() - started) / 60, 1),
                   "torch": torch.__version__, "results": results, "table": text,
                   "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores, {args.jobs} jobs x 1 thread"}
        (Path(args.runs) / "multiclass.json").write_text(json.dumps(summary, indent=2, default=float))
        return text

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_and_score, p, s, args.runs, schedule, mnist_dir, args.test_canvases,
                               args.maxboxacc)
                   for p in sorted(poolings, key=lambda p: SLOWEST_FIRST.index(p) if p in SLOWEST_FIRST else 0)
                   for s in seeds]
        for future in as_completed(futures):
            results.append(future.result())
            text = save()
    minutes = (time.time() - started) / 60
    print(f"\nMulti-class MNIST128 (10 classes, 1-3 digits), mean ± sd over seeds {args.seeds}\n{text}")
    print(f"multiclass: {minutes:.1f} minutes; results in {Path(args.runs) / 'multiclass.json'}")


if __name__ == "__main__":
    main()
