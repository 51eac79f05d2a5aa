"""LeNet on a domain nobody tuned for, with and without input normalisation (train-cam --input-norm).

A held-out set in VOC layout, drawn here and nowhere in the repository's training code: coloured
capital letters (A, H, K, O, X; OpenCV's Hershey font, 0.9-1.5 scale, stroke 3) on blurred grey
noise with a few random lines, 128x128, 1-3 non-overlapping letters per image; 3,000 train / 400 val
/ 600 test images; boxes are the letters' ink. Every image has the same statistics in every channel
(mean 0.43, sd 0.06), far from centred. LeNet + SPAM is trained from scratch for 6 epochs with
train-cam's own schedule and with table1's (`--lr 5e-3 --warmup-epochs 0.5 --output-lr-scale 10
--weight-decay 5e-4`), each with `--input-norm measured` (the training split's statistics; what
`auto` picks for LeNet on voc: data) and `--input-norm none` (raw pixels, what LeNet saw before),
several seeds. Test split: classification, pin-pointing and extent AP ranked by confidence (in the
form the model chose), extent AP ranked by the raw peak (the paper's; box settings chosen on
validation for that ranking, as `eval-cam --score peak --tune` does), and the deployed boxes
(confidence >= 0.5, one class per object at IoU 0.5). Prints mean ± sd over seeds.

    python benchmarks/input_norm.py [--seeds 0,1,2] [--jobs 2] [--runs runs/input_norm]
    python benchmarks/input_norm.py --rescore    # the checkpoints there, box settings chosen again
    python benchmarks/input_norm.py --schedules default --norms measured   # what train-cam's defaults give
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

from _help import Formatter, comma_subset
from _runs import add_memory_format

LETTERS = ("A", "H", "K", "X", "O")
SPLIT_SIZES = {"train": 3000, "val": 400, "test": 600}
SIDE = 128
EPOCHS = 6
SCHEDULES = {"train-cam's": [], "table1's": ["--lr", "5e-3", "--warmup-epochs", "0.5", "--output-lr-scale", "10",
                                           "--weight-decay", "5e-4"]}
SCHEDULE_TAGS = {"train-cam's": "default", "table1's": "t1"}  # --schedules' names, and the run folders'
NORMS = ("measured", "none")
COLUMNS = {"classification_ap_mean": "classification", "pinpoint_ap_mean": "pin-pointing",
           "extent_ap_mean": "extent", "peak_extent_ap_mean": "extent, ranked by peak",
           "deployed_extent_ap_mean": "extent, deployed",
           "deployed_wrong_class_rate": "wrong-class boxes %, deployed", "deployed_missed_rate": "missed %, deployed"}


def make_letters_voc(root: Path, seed: int = 7) -> Path:
    """Write the held-out letters set (module docstring) in VOC layout; returns `root`."""
    import cv2

    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {split: [] for split in SPLIT_SIZES}
    count = 0
    for split, size in SPLIT_SIZES.items():
        for _ in range(size):
            image = cv2.GaussianBlur(rng.normal(110, 30, (SIDE, SIDE, 3)).clip(0, 255).astype(np.uint8), (0, 0), 1.2)
            for _ in range(rng.integers(3, 7)):  # clutter: thin lines of random grey-ish colours
                p = rng.integers(0, SIDE, 4)
                cv2.line(image, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                         tuple(int(c) for c in rng.integers(60, 200, 3)), 1)
            objects: list[tuple[int, tuple[int, int, int, int]]] = []
            for _ in range(rng.integers(1, 4)):
                for _attempt in range(30):
                    letter, scale = int(rng.integers(len(LETTERS))), float(rng.uniform(0.9, 1.5))
                    (w, h), base = cv2.getTextSize(LETTERS[letter], cv2.FONT_HERSHEY_SIMPLEX, scale, 3)
                    x, y = int(rng.integers(2, SIDE - 2 - w)), int(rng.integers(h + 2, SIDE - 2 - base))
                    room = (x - 1, y - h - 1, x + w + 1, y + base // 2 + 1)
                    if all(room[2] < b[0] or room[0] > b[2] or room[3] < b[1] or room[1] > b[3] for _, b in objects):
                        break
                else:
                    continue
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                ink = np.zeros((SIDE, SIDE), np.uint8)
                cv2.putText(ink, LETTERS[letter], (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 3)
                ys, xs = np.nonzero(ink)
                cv2.putText(image, LETTERS[letter], (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 3)
                objects.append((letter, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
            name = f"{count:06d}"
            count += 1
            cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            xml = [f"<annotation><filename>{name}.jpg</filename>",
                   f"<size><width>{SIDE}</width><height>{SIDE}</height><depth>3</depth></size>"]
            xml += [f"<object><name>{LETTERS[c]}</name><difficult>0</difficult><bndbox><xmin>{b[0] + 1}</xmin>"
                    f"<ymin>{b[1] + 1}</ymin><xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax></bndbox></object>"
                    for c, b in objects]
            (root / "Annotations" / f"{name}.xml").write_text("\n".join(xml + ["</annotation>"]))
            names[split].append(name)
    for split, listed in names.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(listed) + "\n")
    return root


def train_and_score(data: str, schedule: str, norm: str, seed: int, runs: str, memory_format: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from training.cli import main as train_cam

    out = _run_folder(runs, schedule, norm, seed)
    started = time.time()
    code = train_cam(["--dataset", f"voc:{data}", "--backbone", "lenet", "--epochs", str(EPOCHS), "--input-norm", norm,
                      "--seed", str(seed), "--out", str(out), "--no-progress", "--overwrite", "--memory-format", memory_format, *SCHEDULES[schedule]])
    if code != 0:
        raise RuntimeError(f"train-cam exited {code} for {out}")
    return score(runs, schedule, norm, seed) | {"minutes": round((time.time() - started) / 60, 2)}


def _run_folder(runs: str, schedule: str, norm: str, seed: int) -> Path:
    return Path(runs) / f"{SCHEDULE_TAGS[schedule]}_{norm}_s{seed}"


def score(runs: str, schedule: str, norm: str, seed: int, *, choose_again: bool = False) -> dict:
    """The test split with the box settings the checkpoint holds (train-cam's choice), or with
    `choose_again` chosen now on the validation split by the current chooser (nothing is written);
    and ranked by the raw peak (the paper's), its settings chosen on validation for that ranking."""
    import torch

    torch.set_num_threads(1)
    from runtime.postprocess import BoxSettings

    checkpoint = _run_folder(runs, schedule, norm, seed) / "ckpt.pt"
    ranked = _test(checkpoint, tune=choose_again)
    deployed = _test(checkpoint, tune=choose_again, min_confidence=0.5, overlap_iou=0.5)
    by_peak = _test(checkpoint, tune=True, scoring="peak")
    settings = {k: ranked[k] for k in ("projection", "relative_floor", "ratio", "ratio_y")}
    form = BoxSettings.from_fields(ranked).confidence_form
    result = {"schedule": schedule, "norm": norm, "seed": seed, "settings": settings, "confidence_form": form}
    result |= {k: float(ranked[k]) for k in ("classification_ap_mean", "pinpoint_ap_mean", "extent_ap_mean")}
    result |= {f"deployed_{k}": float(deployed[k]) for k in ("extent_ap_mean", "wrong_class_rate", "missed_rate")}
    result["peak_extent_ap_mean"] = float(by_peak["extent_ap_mean"])
    print(f"input_norm: {schedule} schedule, --input-norm {norm}, seed {seed}: extent AP "
          f"{100 * result['extent_ap_mean']:.1f} ({settings}, {form} form), by peak "
          f"{100 * result['peak_extent_ap_mean']:.1f}", flush=True)
    return result


def _test(checkpoint: Path, *, tune: bool, **options) -> dict:
    """eval-cam on the test split; with `tune`, the box settings chosen on validation first (not stored).
    A run that localizes nothing on validation keeps its stored settings, as train-cam keeps them."""
    from runtime.evaluation import RatioTuningError
    from training.evaluate import evaluate_model

    try:
        return evaluate_model(checkpoint, split="test", progress=False, tune=tune, write_settings=False, **options)
    except RatioTuningError:
        return evaluate_model(checkpoint, split="test", progress=False, **options)


def table(results: list[dict]) -> str:
    lines = ["| schedule | --input-norm | seeds | " + " | ".join(COLUMNS.values()) + " |",
             "|" + " --- |" * (3 + len(COLUMNS))]
    for schedule in SCHEDULES:
        for norm in NORMS:
            runs = sorted((r for r in results if (r["schedule"], r["norm"]) == (schedule, norm)), key=lambda r: r["seed"])
            if not runs:
                continue
            cells = []
            for column in COLUMNS:
                values = 100 * np.array([r[column] for r in runs])
                cells.append(f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}")
            seeds = ", ".join(str(r["seed"]) for r in runs)
            lines.append(f"| {schedule} | {norm} | {seeds} | " + " | ".join(cells) + " |")
    per_seed = ["", "Extent AP per seed: " + "; ".join(
        f"{r['schedule']} {r['norm']} s{r['seed']} {100 * r['extent_ap_mean']:.1f} "
        f"({r.get('confidence_form', 'instance')} form; by peak {100 * r.get('peak_extent_ap_mean', float('nan')):.1f})"
        for r in sorted(results, key=lambda r: (r["schedule"], r["norm"], r["seed"])))]
    return "\n".join(lines + per_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="models trained at once, one thread each")
    parser.add_argument("--runs", default="runs/input_norm", help="folder for the data set, checkpoints and input_norm.json")
    parser.add_argument("--schedules", default=",".join(SCHEDULE_TAGS.values()),
                        type=comma_subset(tuple(SCHEDULE_TAGS.values())),
                        help="comma-separated schedules to run: default (train-cam's), t1 (table1's)")
    parser.add_argument("--norms", default=",".join(NORMS), type=comma_subset(NORMS),
                        help="comma-separated --input-norm values to run")
    add_memory_format(parser)
    parser.add_argument("--rescore", action="store_true",
                        help="score the checkpoints in --runs again, their box settings chosen again by the current "
                             "chooser on the validation split (nothing trained, nothing written into them)")
    args = parser.parse_args()
    started = time.time()
    runs = Path(args.runs)
    data = runs / "letters"
    if not (data / "ImageSets" / "Main" / "test.txt").is_file():
        make_letters_voc(data)
    os.environ["OMP_NUM_THREADS"] = "1"
    seeds = [int(s) for s in args.seeds.split(",")]
    schedules = [name for name, tag in SCHEDULE_TAGS.items() if tag in args.schedules]
    norms = args.norms
    results: list[dict] = []
    name = "input_norm_rescored.json" if args.rescore else "input_norm.json"
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        if args.rescore:
            futures = [pool.submit(score, str(runs), schedule, norm, seed, choose_again=True)
                       for seed in seeds for schedule in schedules for norm in norms]
        else:
            futures = [pool.submit(train_and_score, str(data), schedule, norm, seed, str(runs), args.memory_format)
                       for seed in seeds for schedule in schedules for norm in norms]
        for future in as_completed(futures):
            results.append(future.result())
            summary = {"minutes": round((time.time() - started) / 60, 1), "results": results, "table": table(results),
                       "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores, "
                                  f"{args.jobs} jobs x 1 thread"}
            (runs / name).write_text(json.dumps(summary, indent=2))  # kept if interrupted
    print(f"\nLeNet + SPAM on held-out letters (VOC layout), {EPOCHS} epochs, test split, mean ± sd over seeds\n"
          f"{table(results)}\ninput_norm: {(time.time() - started) / 60:.1f} minutes; results in "
          f"{runs / name}")


if __name__ == "__main__":
    main()
