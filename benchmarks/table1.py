"""Reproduce the paper's MNIST128 experiment (Table 1) on real MNIST digits, over several seeds.

Trains LeNet CAM models with GMP, GAP and SPAM pooling (same data and schedule) for each seed, tunes r
on the validation split, and measures classification / pin-pointing / extent AP, MaxBoxAccV2
(wsolevaluation's) and MaxBoxAccRF on the test split, against the pasted 28x28 patch (the decided
ground truth) and, from the same CAMs, against the digit's ink box. Prints mean +- sd over seeds
beside the paper's figures, trains SPAM once more on canvases with 1-3 digits, and draws the figures
(gradient flow, summed CAMs, localization examples) into docs/.

    python benchmarks/table1.py [--seeds 0,1,2] [--epochs 8] [--jobs 2] [--runs runs/table1] [--docs docs]

The digits are the whole MNIST (`fetch-mnist --full`, from PyPI): 54,000 train / 6,000 validation
digits and the 10,000 test digits. An epoch draws --epoch-samples canvases (positions redrawn every
epoch); --digits npm uses the 10,000 digits of npm mnist@1.1.0 instead (70/10/20 % splits). Models
train --jobs at a time, one thread each (on 2 cores, faster than one model on two threads).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from _help import comma_subset
from _runs import VAL_FOR_TUNING, add_memory_format, paper_boxes

VAL_DURING_TRAINING = 1000  # validation canvases per epoch (progress only); r is tuned on _runs.VAL_FOR_TUNING
PAPER = {"gmp": (99.8, 98.9, 69.5), "gap": (99.4, 82.3, 79.1), "spam": (99.9, 95.8, 95.8)}  # the paper's Table 1, for comparison only
POOLINGS = ("gmp", "gap", "spam")
BOXES = ("patch", "ink")  # the decided ground truth first, the ink box beside it
METRICS = ("classification_ap_mean", "pinpoint_ap_mean", "extent_ap_mean", "extent_ap_11pt_mean", "MaxBoxAccV2",
           "MaxBoxAccRF", "ratio")


def run_name(pooling: str, seed: int, objects=(1, 1)) -> str:
    return f"{pooling}{'' if objects == (1, 1) else '_multi'}_s{seed}"


def train_and_evaluate(pooling: str, seed: int, runs: str, schedule: dict, mnist_dir: str | None,
                       objects=(1, 1), backbone: str = "lenet") -> dict:
    """Train one model, then score its test CAMs against both ground truths, r tuned on validation for
    each (the model is predicted once). Runs in a worker process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    from _runs import predict_val_test, splits_for, tuned_on_val, with_boxes_of
    from training.checkpoint import load_model
    from training.predict import localizer_params
    from training.train import TrainConfig, train

    started = time.time()
    record = train(TrainConfig(**paper_boxes(), dataset="mnist128", pooling=pooling, seed=seed,
                               out=str(Path(runs) / run_name(pooling, seed, objects)),
                               objects=objects, progress=False, overwrite=True, mnist_dir=mnist_dir, mnist_box="patch", backbone=backbone,
                               limits={"val": VAL_DURING_TRAINING}, **schedule))
    model, payload = load_model(record["checkpoint"])
    config = payload["extra"]["train_config"]
    patch, ink = (splits_for(config, val=VAL_FOR_TUNING, mnist_box=box) for box in BOXES)
    val, test = predict_val_test(model, patch)
    scored = {"patch": (val, test), "ink": (with_boxes_of(val, ink.val), with_boxes_of(test, ink.test))}
    result = {"pooling": pooling, "seed": seed, "objects": list(objects), "checkpoint": record["checkpoint"]}
    for box, (box_val, box_test) in scored.items():
        ratio, metrics = tuned_on_val(box_val, box_test, localizer_params(model), with_maxboxacc=True)
        result[box] = {k: float(metrics[k]) for k in METRICS if k in metrics} | {
            "detections_per_image": metrics["detections_per_image"], "ratio": ratio}
    result["minutes"] = round((time.time() - started) / 60, 2)
    print(f"table1: {run_name(pooling, seed, objects)} done in {result['minutes']:.1f} min: "
          + ", ".join(f"{box} extent {100 * result[box]['extent_ap_mean']:.1f}" for box in BOXES)
          + f", classification {100 * result['patch']['classification_ap_mean']:.1f}", flush=True)
    return result


def mean_sd(values) -> str:
    values = 100 * np.asarray(values, dtype=np.float64)
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}"


def figure_gradient_flow(path: Path) -> None:
    """Paper Fig. 5: the gradient each pooling sends to a CAM around its maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from training.pooling import GlobalCamPool

    n = 29  # LeNet's CAM at 128 px
    yy, xx = np.mgrid[0:n, 0:n]
    cam = 3 * np.exp(-((yy - 14) ** 2 + (xx - 14) ** 2) / (2 * 3.0**2)) + np.random.default_rng(0).normal(0, 0.05, (n, n))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].imshow(cam, cmap="viridis")
    axes[0].set_title("example CAM (N = 29)")
    for ax, mode in zip(axes[1:], POOLINGS):
        tensor = torch.tensor(cam[None, None], requires_grad=True)
        GlobalCamPool(mode)(tensor).sum().backward()
        grad = tensor.grad[0, 0].numpy()
        image = ax.imshow(np.log10(grad + 1e-6), cmap="magma", vmin=-6, vmax=0)
        ax.set_title(f"{mode.upper()}: log10 gradient (g = 1)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _object_windows(checkpoint: str, seed: int, mnist_dir: str | None, size: int = 64, limit: int = 2000):
    """CAMs laid onto the input, cropped around each test 3 at twice its box and resized to a fixed
    size, so every object has the same size and position (paper Fig. 9)."""
    import cv2

    from runtime.metrics import cam_to_input
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import predict

    model, _ = load_model(checkpoint)
    test = load_splits("mnist128", seed=seed, sizes={"test": limit}, mnist_dir=mnist_dir).test
    predictions, _ = predict(model, test)
    chain, input_size = model.config.geometry, tuple(model.config.input_size)
    total, inside, outside = np.zeros((size, size)), 0.0, 0.0
    for cams, boxes in zip(predictions.cams, predictions.boxes):
        for _, x0, y0, x1, y1 in boxes:
            heat = cam_to_input(cams[0], chain, input_size)
            heat = np.clip(heat, 0, None)
            if heat.max() <= 0:
                continue
            heat = heat / heat.max()
            activated = heat > 0
            box_mask = np.zeros_like(activated)
            box_mask[int(y0) : int(y1), int(x0) : int(x1)] = True
            inside += activated[box_mask].sum()
            outside += activated[~box_mask].sum()
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
            padded = np.pad(heat, 64)
            crop = padded[int(cy - half) + 64 : int(cy + half) + 64, int(cx - half) + 64 : int(cx + half) + 64]
            total += cv2.resize(crop.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return total, inside, outside


def figure_cam_sums(path: Path, checkpoints: dict[str, str], seed: int,
                    mnist_dir: str | None) -> dict[str, tuple[float, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(checkpoints), figsize=(5 * len(checkpoints), 4.4))
    counts = {}
    for ax, (pooling, checkpoint) in zip(np.atleast_1d(axes), checkpoints.items()):
        total, inside, outside = _object_windows(checkpoint, seed, mnist_dir)
        counts[pooling] = (inside, outside)
        ax.imshow(total / total.max(), cmap="jet", vmin=0, vmax=1)
        ax.add_patch(plt.Rectangle((15.5, 15.5), 32, 32, fill=False, color="white", lw=2))
        ax.set_title(f"{pooling.upper()}: activated px in {inside / 1e3:.0f}k / out {outside / 1e3:.0f}k")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Sum of normalised CAMs around each test 3 (object box = white square)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return counts


def figure_examples(path: Path, checkpoints: dict[str, str], seed: int, mnist_dir: str | None,
                    count: int = 6) -> None:
    """Paper Fig. 10 / 13: the same test images localized by each pooling (rows), drawn as eval-cam
    --save-vis draws them, each row's heat on its model's own fixed scale."""
    import cv2

    from runtime.postprocess import localize
    from runtime.visualize import contact_sheet, heat_scale, render_example, write_png
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import localizer_params, predict

    test = load_splits("mnist128", seed=seed, sizes={"test": 400}, mnist_dir=mnist_dir, mnist_box="patch").test
    picks = [i for i in range(len(test)) if test[i].labels[0]][:count]
    rows = []
    for pooling, checkpoint in checkpoints.items():
        model, _ = load_model(checkpoint)
        params = localizer_params(model)
        predictions, _ = predict(model, test)
        scale = heat_scale(predictions.cams)
        tiles = []
        for i in picks:
            found = localize(predictions.cams[i], params)
            tiles.append(render_example(test[i].image, predictions.cams[i], found, params, ["3"],
                                        gt_boxes=test[i].boxes, scale=scale,
                                        confidences=[float(predictions.scores[i, 0])] * len(found)))
        row = contact_sheet(tiles, columns=len(tiles))
        label = np.full((row.shape[0], 90, 3), 32, np.uint8)
        cv2.putText(label, pooling.upper(), (8, row.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        rows.append(np.hstack([label, row]))
    from runtime.visualize import legend

    write_png(path, contact_sheet([np.vstack(rows)], columns=1,
                                  caption=legend((0, 0), "P(present) of the image").replace(
                                      "blue 0 .. red 0 (one scale for all pictures)", "one scale per row (model)")))


def table(results: list[dict], box: str) -> str:
    """Mean ± sd over seeds, one row per pooling, for one ground-truth definition."""
    lines = ["| Method | seeds | Classification | Pin-pointing | Extent | Extent (11-pt) | MaxBoxAccV2 | MaxBoxAccRF | r | "
             "paper: Cls / Pin / Extent |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for pooling in POOLINGS:
        rows = [r[box] for r in results if r["pooling"] == pooling and r["objects"] == [1, 1]]
        if not rows:
            continue
        cells = [mean_sd([row[k] for row in rows]) for k in METRICS[:-1]]
        ratios = "/".join(f"{row['ratio']:g}" for row in rows)
        paper = " / ".join(f"{v:.1f}" for v in PAPER[pooling])
        lines.append(f"| {pooling.upper()} (ours) | {len(rows)} | " + " | ".join(cells) + f" | {ratios} | {paper} (paper's) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", choices=["full", "npm"], default="full",
                        help="the whole MNIST from PyPI (default) or npm mnist@1.1.0's 10,000 digits")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds; each trains every pooling")
    parser.add_argument("--poolings", default=",".join(POOLINGS), type=comma_subset(POOLINGS),
                        help="comma-separated poolings to train (the figures need all three: else add --no-figures)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-samples", type=int, default=14000,
                        help="canvases drawn per epoch with --digits full (npm: the whole train split)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="Adam's weight decay (not on the output affine)")
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (cosine to 0 after the warm-up)")
    parser.add_argument("--warmup-epochs", type=float, default=0.5, help="linear learning-rate warm-up")
    parser.add_argument("--output-lr-scale", type=float, default=10.0,
                        help="the output affine's learning rate relative to --lr (GAP's pooled score is small)")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="models trained at once, one thread each (default: 2 on 2+ cores)")
    parser.add_argument("--backbone", default="lenet", choices=["lenet", "lenet_s4"],
                        help="lenet_s4: LeNet-5 up to S4, a 16 px receptive field, smaller than a digit (the field study)")
    add_memory_format(parser)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--skip-multi", action="store_true", help="skip the 1-3 digits SPAM run")
    parser.add_argument("--no-figures", action="store_true", help="only the table")
    args = parser.parse_args()
    poolings = args.poolings
    if poolings != POOLINGS and not args.no_figures:
        parser.error("the figures compare all three poolings: train them all, or add --no-figures")
    import torch

    from training.data.mnist_source import fetch_full_mnist

    try:
        mnist_dir = str(fetch_full_mnist()) if args.digits == "full" else None
    except RuntimeError as error:
        raise SystemExit(f"table1: {error} (or run with --digits npm)") from error
    seeds = [int(v) for v in args.seeds.split(",")]
    schedule = {"epochs": args.epochs, "weight_decay": args.weight_decay, "lr": args.lr, "warmup_epochs": args.warmup_epochs,
                "output_lr_scale": args.output_lr_scale, "memory_format": args.memory_format,
                "epoch_samples": args.epoch_samples if args.digits == "full" else None}
    runs, docs = Path(args.runs), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tasks = [(pooling, seed, (1, 1)) for seed in seeds for pooling in poolings]
    if not args.skip_multi:
        tasks.append(("spam", seeds[0], (1, 3)))
    os.environ["OMP_NUM_THREADS"] = "1"  # workers inherit it: one thread each, no oversubscription
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_and_evaluate, pooling, seed, str(runs), schedule, mnist_dir, objects, args.backbone)
                   for pooling, seed, objects in tasks]
        results = [future.result() for future in futures]
    training_minutes = (time.time() - started) / 60
    counts = {}
    if not args.no_figures:
        checkpoints = {p: str(runs / run_name(p, seeds[0]) / "ckpt.pt") for p in POOLINGS}
        figure_gradient_flow(docs / "fig_gradient_flow.png")
        counts = figure_cam_sums(docs / "fig_cam_sums.png", checkpoints, seeds[0], mnist_dir)
        figure_examples(docs / "fig_examples.png", checkpoints, seeds[0], mnist_dir)
    total = time.time() - started

    tables = {box: table(results, box) for box in BOXES}
    for box in BOXES:
        print(f"\nGround truth: {box} box (mean ± sd over seeds {args.seeds}; r per seed)\n{tables[box]}")
    multi = [r for r in results if r["objects"] == [1, 3]]
    for m in multi:
        print(f"SPAM, 1-3 digits per canvas (seed {m['seed']}): extent AP {100 * m['patch']['extent_ap_mean']:.1f} (patch), "
              f"{100 * m['ink']['extent_ap_mean']:.1f} (ink); {m['patch']['detections_per_image']:.2f} boxes per image")
    summary = {"digits": args.digits, "backbone": args.backbone, "schedule": schedule, "seeds": seeds, "jobs": args.jobs,
               "minutes": round(total / 60, 1), "training_minutes": round(training_minutes, 1),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.jobs} jobs x 1 thread",
               "torch": torch.__version__, "results": results, "activated_pixels_inside_outside": counts,
               "tables": tables}
    (runs / "table1.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"table1: {total / 60:.1f} minutes in all; results in {runs / 'table1.json'}"
          + ("" if args.no_figures else f", figures in {docs}/"))


if __name__ == "__main__":
    main()
