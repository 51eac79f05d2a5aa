"""The training loop behind `train-cam`: image-level labels only, per-class two-way softmax loss.

Single process, or data-parallel under `torchrun` (DistributedDataParallel, gloo on CPU, nccl on
GPU): rank 0 validates, logs and saves, so a distributed run writes exactly one checkpoint.
"""
from __future__ import annotations

import csv
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler

from runtime.confidence import CONFIDENCE_FORMS
from runtime.evaluation import DEFAULT_RATIOS, RELATIVE_FLOORS, RatioTuningError, evaluate, tune_box_settings, tune_ratio
from runtime.geometry import PROJECTIONS
from runtime.postprocess import BoxSettings

from .checkpoint import load_checkpoint, save_checkpoint
from runtime.cli import BadValue, number, word_or
from runtime.config_cli import MergeDict, option
from runtime.scores import DEFAULT_SPAM_KERNELS, POOLINGS

from .backbones import BACKBONES, OUTPUT_STRIDES
from .data.mnist128 import parse_positive
from .evaluate import SAME, relative_floor_value
from .data.options import Mnist128Options
from .data.split_plan import SPLITS
from .data.registry import DATASET_HELP, load_splits
from .pooling import parse_kernels
from .input_norm import AUTO, INPUT_NORMS, input_normalisation, resolve_input_norm
from .model import ModelConfig, build_model
from .predict import TorchSplit, classifier_head, collate, localizer_params, predict
from runtime.errors import ConfigError, DeviceError
from runtime.output_paths import creatable_folder

__all__ = ["TrainConfig", "train", "select_device", "flush_denormals"]


def split_counts(value) -> dict[str, int]:
    """--limit SPLIT=N (repeatable; merged), or {train: 2000, ...} in a config file."""
    pairs = value.items() if isinstance(value, dict) else [str(value).partition("=")[::2]]
    counts = {}
    for split, count in pairs:
        if split not in SPLITS or not str(count).isdigit() or int(count) < 1:
            raise BadValue(f"{value!r} is not SPLIT=N with SPLIT train, val or test and N >= 1 (e.g. train=2000)")
        counts[split] = int(count)
    return counts


def kernel_list(value) -> list:
    """SPAM's pyramid from "1,2,5,N" (the command line) or [1, 2, 5, N] (a config file), each size checked."""
    return list(parse_kernels(value))


def _input_side(value) -> int:
    return number(int, minimum=16)(value)




# How activations are laid out while training. channels_last (NHWC) lets oneDNN and cuDNN skip the reorders
# around every convolution: 25-35 % less time per step on a CPU (docs/benchmarks.md, "Training step").
# It sums in another order, so a run differs from a contiguous one in the last bits and, through
# training, in its weights; figures in docs/results.md measured before 2026-12-03 were contiguous.
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


relative_floor_choice = word_or(AUTO, relative_floor_value, "give a share of the peak in [0, 1), or auto")  # --relative-floor


@dataclass(kw_only=True)
class TrainConfig(Mnist128Options):
    """Everything a training run depends on; train-cam's options are generated from these fields
    (runtime/config_cli.py) and the checkpoint stores them."""

    # data
    dataset: str = option("embedded", f"one of: {DATASET_HELP}", group="data")  # no download: runs anywhere
    positive: int | str = option(3, "MNIST128's positive digit, or 'all': every digit its own class, the multi-class "
                                 "set (use with --objects 1,3)", type=parse_positive, metavar="DIGIT|all",
                                 group="data")
    limits: dict[str, int] = option(help="cap a split's size, e.g. --limit train=2000 (repeatable)", factory=dict,
                                    flags=("--limit",), type=split_counts, action=MergeDict, metavar="SPLIT=N",
                                    group="data")
    balance: bool = option(True, "single-class data: draw present/absent images equally often (MNIST128 has ~10% 3s)",
                           switch="--no-balance", group="data")
    epoch_samples: int | None = option(None, "images drawn per epoch (default: the whole train split; single process "
                                       "only)", type=number(int, minimum=1), metavar="N", group="data")
    # model
    backbone: str = option("lenet", "", choices=list(BACKBONES), group="model")
    pooling: str = option("spam", "", choices=POOLINGS, group="model")
    spam_kernels: list[Any] = option(help="SPAM pyramid, 'N' = whole map", factory=lambda: list(DEFAULT_SPAM_KERNELS),
                                     type=kernel_list, metavar="K,K,...", group="model")
    input_size: list[int] | None = option(None, "H [W]; default: the dataset's (128 for MNIST128)", type=_input_side,
                                          nargs="+", metavar="PX", group="model")
    pretrained: str = option("none", "ImageNet weights from torchvision (needs the network or torch's cache)",
                             choices=["none", "imagenet"], group="model")
    weights: str | None = option(None, "local state_dict for the backbone (full torchvision model or features)",
                                 group="model")
    input_norm: str = option(AUTO, "what the network's input is normalised by (folded into the exported graph): "
                             "imagenet (the statistics ImageNet weights expect), measured (each channel's mean and sd "
                             "over the training split), none (raw [0, 1] pixels); auto: imagenet for torchvision "
                             "backbones, none for LeNet on the generated sets, measured for LeNet on folder:, csv: "
                             "and voc: data (LeNet has no batch norm: un-centred pixels can kill its ReLUs)",
                             choices=[AUTO, *INPUT_NORMS], group="model")
    projection: str = option(AUTO, "how boxes come from a CAM: each pixel's receptive field (theoretical, the paper's "
                             "Algorithm 1), the CAM interpolated over its stride tiles (interpolated, for deep "
                             "backbones), or auto: chosen with r on the validation split after the last epoch",
                             choices=[AUTO, *PROJECTIONS], group="boxes")
    height_ratio: str = option(AUTO, "r for box heights: auto (heights may take an r of their own, near the shared "
                               "one, where that localizes better on the validation split after the last epoch: a "
                               "receptive field is square, objects are not) or same (one r, the paper's)",
                               choices=[AUTO, SAME], group="boxes")
    confidence_form: str = option(AUTO, "how a box's confidence is computed: instance (P(present) of the box's own "
                                  "cells, pooled as the model pools), peak (P(present) of a typical instance with the "
                                  "box's CAM peak: ranks each class's boxes as the paper's peak does), or auto: the "
                                  "one that localizes better on the validation split after the last epoch",
                                  choices=[AUTO, *CONFIDENCE_FORMS], group="boxes")
    relative_floor: float | str = option(AUTO, "mountains also stop at this share of their own peak (0: the paper's); "
                                         f"auto: chosen from {', '.join(f'{v:g}' for v in RELATIVE_FLOORS)} with r "
                                         "after the last epoch", type=relative_floor_choice, metavar="SHARE|auto",
                                         group="boxes")
    output_stride: int | None = option(None, "CAM stride of a deep backbone: 32 (its own) or 16 (its last downsampling "
                                       "removed: twice the CAM resolution, same weights); default: the backbone's own",
                                       type=int, choices=list(OUTPUT_STRIDES), group="model")
    # optimisation
    epochs: int = option(10, "", type=number(int, minimum=1), group="optimisation")
    # batch 32 with lr 2e-3: the fastest of our MNIST128 trials on a CPU (docs/results.md)
    batch_size: int = option(32, "per process", type=number(int, minimum=1), group="optimisation")
    # adam converges fastest on MNIST128; sgd for large backbones
    optimizer: str = option("adam", "", choices=["adam", "adamw", "sgd"], group="optimisation")
    lr: float = option(2e-3, "learning rate", type=number(float, above=0), group="optimisation")
    momentum: float = option(0.9, "sgd only", type=number(float, minimum=0), group="optimisation")
    weight_decay: float = option(0.0, "", type=number(float, minimum=0), group="optimisation")
    schedule: str = option("cosine", "", choices=["cosine", "step", "none"], group="optimisation")
    warmup_epochs: float = option(0.0, "linear learning-rate warm-up, in epochs (lets a higher lr start stably)",
                                  type=number(float, minimum=0), group="optimisation")
    output_lr_scale: float = option(1.0, "learning rate of the output affine (never weight-decayed) relative to --lr "
                                    "(table1 uses 10: GAP's pooled scale is small)", type=number(float, above=0),
                                    group="optimisation")
    # run
    out: str = option("runs/cam", "output folder: ckpt.pt, log.csv and config.yaml", group="run")
    seed: int = option(0, "", type=number(int, minimum=0), group="run")
    device: str = option("auto", "auto, cpu, cuda, cuda:1", group="run")
    amp: bool = option(True, "disable mixed precision on CUDA", switch="--no-amp", group="run")
    # MNIST128 is generated on the fly and cheap; raise for image folders
    workers: int = option(0, "data loader processes", type=number(int, minimum=0), group="run")
    resume: bool = option(False, "continue from OUT/ckpt.pt", group="run")
    overwrite: bool = option(False, "replace the run already in OUT (without it, an existing OUT/ckpt.pt is refused)",
                             group="run")
    tensorboard: bool = option(False, "also log to OUT/tensorboard (needs tensorboard)", group="run")
    tolerance: float = option(0.0, "pin-pointing tolerance in pixels (0 on MNIST128, 18 on VOC)",
                              type=number(float, minimum=0), group="run")
    progress: bool = option(True, "no progress bar", switch="--no-progress", group="run")
    memory_format: str = option("channels_last", "activation layout while training: channels_last (25-35 % faster per step "
                                "on a CPU, docs/benchmarks.md) or contiguous (the layout of runs before 2026-12-03, to reproduce their "
                                "figures to the decimal); checkpoints are stored contiguous either way",
                                choices=list(MEMORY_FORMATS), group="run")

    def __post_init__(self) -> None:
        if self.objects is None:
            self.objects = (1, 1)
        self.objects = tuple(self.objects)
        if self.input_size:
            if len(self.input_size) > 2:
                raise ConfigError(f"--input-size takes H or H W, got {len(self.input_size)} numbers")
            self.input_size = [self.input_size[0], self.input_size[-1]]
        else:
            self.input_size = None


def select_device(name: str = "auto") -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked for, but PyTorch sees no CUDA device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@contextmanager
def flush_denormals() -> Iterator[bool]:
    """Within the block, treat denormal floats as zero on the CPU (x86 SSE3 and ARM; a no-op elsewhere);
    yields whether the CPU supports it.

    Weight decay drives the weights of dead units towards zero until they become denormal, and x86
    CPUs compute on denormals in microcode: measured on a LeNet GAP checkpoint after 4 epochs (11,375 of
    50,817 weights denormal), a training step took 1.59 s instead of 0.16 s, so epochs slowed from 53 s
    to 300 s mid-run. Flushing changes values below 1.2e-38 only. The mode is the CPU thread's global
    state, so it is switched back off after the block: left on, it broke other code in the same process
    (hypothesis refuses to run when subnormal floats cannot be represented)."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(False)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def parameter_groups(config: TrainConfig, model) -> list[dict[str, Any]]:
    """Backbone and CAM layer at lr with weight decay; the output affine at lr * output_lr_scale and
    without weight decay. The affine's slope a_c must grow as large as 1 / (the pooled score's range):
    GAP's mean over a 29x29 CAM is a fraction of the peak that GMP pools, and weight decay pulls a_c
    towards 0, so with decay GAP's classification kept lagging (docs/results.md, point 6)."""
    output = {id(p) for p in model.output_layer_parameters()}
    return [{"params": [p for p in model.parameters() if id(p) not in output]},
            {"params": model.output_layer_parameters(), "lr": config.lr * config.output_lr_scale, "weight_decay": 0.0}]


def _optimizer(config: TrainConfig, model) -> torch.optim.Optimizer:
    groups = parameter_groups(config, model)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise ConfigError(f"optimizer must be adam, adamw or sgd, got {config.optimizer!r}")


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """The learning rate's multiplier at optimizer step `step` of `total`: a linear warm-up over the
    first `warmup` steps, then the schedule over the rest (cosine to 0; step: x0.1 after two thirds)."""
    if step < warmup:
        return (step + 1) / warmup
    done, span = step - warmup, max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(done, span) / span))
    if schedule == "step":
        return 0.1 if done >= (span * 2) // 3 else 1.0
    if schedule == "none":
        return 1.0
    raise ConfigError(f"schedule must be cosine, step or none, got {schedule!r}")


def _scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    lr_factor(config.schedule, 0, total, warmup)  # an unknown schedule fails here, before any training
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config.schedule, step, total, warmup))


def _sampler(config: TrainConfig, split, train_data, rank: int, world: int):
    """Balanced draws for single-class data, so a rare positive (MNIST128's 3s) is not drowned out
    by the "absent" answer in the first epochs; plain shuffling otherwise."""
    generator = torch.Generator().manual_seed(config.seed)
    if world > 1:
        return DistributedSampler(train_data, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    positives = _single_class_labels(split) if config.balance else None
    draws = config.epoch_samples or len(train_data)
    if positives is None or positives.all() or not positives.any():
        return RandomSampler(train_data, num_samples=draws, generator=generator)
    share = positives.mean()
    weights = np.where(positives, 0.5 / share, 0.5 / (1 - share))
    return WeightedRandomSampler(torch.as_tensor(weights), num_samples=draws, generator=generator)


def _single_class_labels(split) -> np.ndarray | None:
    """Which images hold the (only) class, read cheaply from the split's own label lists."""
    if hasattr(split, "positive") and hasattr(split, "labels") and split.objects == (1, 1) and len(split.classes) == 1:
        return np.asarray(split.labels) == split.positive
    if hasattr(split, "label_sets") and len(split.classes) == 1:
        return np.array([bool(s) for s in split.label_sets])
    return None


def _model_config(config: TrainConfig, splits) -> ModelConfig:
    in_channels = 1 if config.backbone.startswith("lenet") else 3
    if config.backbone.startswith("lenet") and splits.in_channels == 3:
        in_channels = 3
    norm = resolve_input_norm(config.input_norm, config.backbone, config.dataset)
    if config.pretrained != "none" and norm != "imagenet":
        raise ConfigError(f"--input-norm {config.input_norm}: ImageNet weights (--pretrained {config.pretrained}) expect "
                          "ImageNet's statistics; use --input-norm imagenet (or auto)")
    if norm == "imagenet" and in_channels != 3:
        raise ConfigError(f"--input-norm imagenet is for 3-channel models; {config.backbone} on {config.dataset} has "
                          f"{in_channels}: use measured or none")
    mean, std = input_normalisation(norm, splits.train, in_channels)
    size = list(config.input_size or splits.input_size)
    return ModelConfig(backbone=config.backbone, classes=list(splits.classes), pooling=config.pooling,
                       spam_kernels=kernel_list(config.spam_kernels), input_size=size, in_channels=in_channels,
                       mean=mean, std=std, pretrained=config.pretrained, output_stride=config.output_stride,
                       projection=PROJECTIONS[0] if config.projection == AUTO else config.projection,
                       relative_floor=0.0 if config.relative_floor == AUTO else float(config.relative_floor)).validate()


def _describe_norm(model_config: ModelConfig) -> str:
    if _raw_pixels(model_config):
        return "input not normalised"
    return ("input normalised by mean " + ",".join(f"{m:.3g}" for m in model_config.mean) + " and sd "
            + ",".join(f"{v:.3g}" for v in model_config.std))


def train(config: TrainConfig, *, on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train, validating every epoch; returns the last epoch's record (with the checkpoint path)."""
    rank, world, local_rank = _distributed()
    device = select_device(config.device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    try:
        with flush_denormals():
            return _train(config, rank, world, device, on_epoch)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, rank: int, world: int, device: torch.device, on_epoch) -> dict[str, Any]:
    _seed_everything(config.seed)
    main = rank == 0
    out = Path(config.out)
    ckpt_path = out / "ckpt.pt"
    _check_run_folder(config, ckpt_path)
    if main:
        creatable_folder(out, "--out")  # before loading data and building the model, not at the first checkpoint
    splits = load_splits(config.dataset, seed=config.seed, input_size=config.input_size, positive=config.positive,
                         objects=tuple(config.objects), mnist_dir=config.mnist_dir, sizes=config.limits or None,
                         mnist_box=config.mnist_box)
    model_config = _model_config(config, splits)
    memory_format = MEMORY_FORMATS[config.memory_format]
    model = build_model(model_config, weights_path=config.weights, pretrained=config.pretrained).to(
        device, memory_format=memory_format)

    train_data = TorchSplit(splits.train, model_config.in_channels)
    sampler = _sampler(config, splits.train, train_data, rank, world)
    loader = DataLoader(train_data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.workers, drop_last=len(train_data) > config.batch_size * world)
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer, len(loader))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch = 0
    if config.resume:
        start_epoch = _resume(ckpt_path, model, optimizer, scheduler, model_config)
        if start_epoch >= config.epochs:
            raise ConfigError(f"--resume: {ckpt_path} has trained {start_epoch} epochs already and --epochs is "
                             f"{config.epochs}: nothing to do; give a larger --epochs to train further")
    elif main and config.overwrite:
        for stale in (ckpt_path, out / "log.csv"):  # a fresh run: no second "epoch 1" under the old ones
            stale.unlink(missing_ok=True)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model

    writer = _tensorboard(out) if (config.tensorboard and main) else None
    log_path = out / "log.csv"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"train-cam: {splits.description}; classes {model_config.classes}; {len(splits.train)} train / "
              f"{len(splits.val)} val images; {model_config.backbone} + {model_config.pooling} on {device}"
              f"{f' x{world} processes' if world > 1 else ''}; {_describe_norm(model_config)}", flush=True)
    record: dict[str, Any] = {}
    last_refusal = ""  # why r could not be tuned, said once rather than every epoch
    from tqdm import tqdm

    for epoch in range(start_epoch, config.epochs):
        started = time.time()
        splits.train.set_epoch(epoch)  # MNIST128: new positions every epoch
        if world > 1:
            sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not (main and config.progress), leave=False)
        for images, labels, _ in bar:
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device).long()
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = net(images)["logits"]  # (B, C, 2)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 2), labels.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * len(images)
            count += len(images)
            bar.set_postfix(loss=f"{total / count:.4f}")
        if main:
            record = _validate(model, splits.val, device, config, epoch, total / max(count, 1), started, optimizer)
            save_checkpoint(ckpt_path, model, extra={"train_config": _plain(asdict(config)), "epoch": epoch + 1,
                                                     "validation": {k: v for k, v in record.items()}},
                            training_state={"epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                                            "scheduler": scheduler.state_dict()})
            _append_csv(log_path, record)
            if writer is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "epoch":
                        writer.add_scalar(key, value, epoch + 1)
            print(_epoch_line(record, config.epochs), flush=True)
            if record["ratio_refused"] and record["ratio_refused"] != last_refusal:
                print(f"train-cam: validation: {record['ratio_refused']}", flush=True)
            last_refusal = record["ratio_refused"]
            if at_chance(record):
                print(_chance_warning(record, raw_pixels=_raw_pixels(model_config), batch_norm=_has_batch_norm(model)),
                      flush=True)
            if on_epoch is not None:
                on_epoch(record)
        if world > 1:
            dist.barrier()
    if writer is not None:
        writer.close()
    record["checkpoint"] = str(ckpt_path)
    record["rank"] = rank
    if main:
        _warn_unusable(model)
    return record


def _auto_choices(config: TrainConfig, model_config: ModelConfig) -> dict[str, tuple]:
    """What tune_box_settings may choose from: every option for a setting left to auto, else the one given."""
    return {"projections": PROJECTIONS if config.projection == AUTO else (model_config.projection,),
            "relative_floors": RELATIVE_FLOORS if config.relative_floor == AUTO else (model_config.relative_floor,),
            "separate_heights": config.height_ratio == AUTO,
            "confidence_forms": CONFIDENCE_FORMS if config.confidence_form == AUTO else (config.confidence_form,)}


def interim_ratios(current: float) -> tuple[float, ...]:
    """The r tried after an epoch before the last: every third of DEFAULT_RATIOS (steps of 0.15) and the
    r in use. Why: on a model with many boxes (GAP: ~30 per canvas) the full grid cost a third of
    each epoch. The last epoch still tries every r: the final r is chosen from all of them."""
    return tuple(sorted(set(DEFAULT_RATIOS[::3]) | {float(current)}))


def _validate(model, split, device, config, epoch, train_loss, started, optimizer) -> dict[str, Any]:
    predictions, val_loss = predict(model, split, device=device, batch_size=config.batch_size)
    # The paper tunes Algorithm 1's r on a validation split; doing it every epoch keeps the saved
    # checkpoint ready to localize and makes the logged extent AP mean what a user will get. Where the
    # split cannot choose (too few objects, nothing localized yet), r keeps its previous value. Boxes
    # are ranked by confidence while tuning, as eval-cam and the Localizer rank them.
    head = classifier_head(model)
    refusal = None
    try:
        if epoch + 1 == config.epochs:  # the last epoch: also the projection and relative floor left to auto
            choices = _auto_choices(config, model.config)
            if len(choices["projections"]) * len(choices["relative_floors"]) > 1:  # minutes on a large split: say so
                print(f"train-cam: choosing how boxes are made on the validation split ({len(choices['projections'])} "
                      f"projections x {len(choices['relative_floors'])} relative floors x r"
                      f"{', then r for heights' if choices['separate_heights'] else ''})", flush=True)
            settings, _ = tune_box_settings(predictions, localizer_params(model), head=head, **choices)
            for name, value in settings.fields().items():
                setattr(model.config, name, value)
            head = classifier_head(model)  # the confidence form may have been chosen with the boxes
        else:
            model.config.ratio, _ = tune_ratio(predictions, localizer_params(model), interim_ratios(model.config.ratio),
                                               head=head)
    except RatioTuningError as error:
        refusal = str(error)
    metrics = evaluate(predictions, localizer_params(model), tolerance=config.tolerance,
                       head=head)  # ranked by confidence, as eval-cam ranks by default
    chance = prior_loss(predictions.labels)
    return {
        "epoch": epoch + 1,
        "train_loss": round(train_loss, 6),
        "val_loss": round(val_loss, 6),
        "val_classification_ap": round(metrics["classification_ap_mean"], 6),
        "val_pinpoint_ap": round(metrics["pinpoint_ap_mean"], 6),
        "val_extent_ap": round(metrics["extent_ap_mean"], 6),
        "ratio": model.config.ratio + 0.0,  # no "-0" in logs
        "ratio_y": "" if model.config.ratio_y is None else model.config.ratio_y + 0.0,  # "": heights take `ratio`
        "projection": model.config.projection,
        "relative_floor": model.config.relative_floor,
        "confidence_form": BoxSettings.of(model.config).confidence_form,
        "lr": optimizer.param_groups[0]["lr"],
        "seconds": round(time.time() - started, 2),
        "ratio_refused": refusal or "",
        "chance_loss": round(chance, 6),
        "score_spread": float(f"{np.std(predictions.scores, axis=0).mean():.4g}"),  # FROZEN_SCORE_SPREAD
    }


def prior_loss(labels: np.ndarray) -> float:
    """The loss of a model that learned nothing but each class's frequency: the mean binary entropy of
    the per-class positive rates, in the units of training's loss (cross-entropy over every (image,
    class) pair). A validation loss this high means the model is at chance."""
    rates = np.clip(np.asarray(labels, dtype=np.float64).mean(axis=0), 1e-6, 1 - 1e-6)
    return float(np.mean(-(rates * np.log(rates) + (1 - rates) * np.log(1 - rates))))


AT_CHANCE_AFTER = 2  # epochs a run may take to leave the class-prior loss before it is reported
AT_CHANCE_MARGIN = 0.97  # a validation loss above 97 % of the prior's has learned (almost) nothing
# Below this, P(present) barely moves between validation images (its sd, averaged over classes): the
# network gives every image the same answer. Measured: 7e-7 and 9e-6 for letters runs whose ReLUs had
# died, 0.02 for a slow letters run, 0.45 for a trained one; 1e-3 for an untrained LeNet (lr 1e-9, embedded).
FROZEN_SCORE_SPREAD = 1e-4


def at_chance(record: dict) -> bool:
    """Whether this epoch's validation says the model learned nothing yet (see prior_loss)."""
    return record["epoch"] >= AT_CHANCE_AFTER and record["val_loss"] >= AT_CHANCE_MARGIN * record["chance_loss"]


def _raw_pixels(model_config: ModelConfig) -> bool:
    """The network sees [0, 1] pixels as they come (no mean or sd folded in)."""
    return all(m == 0 for m in model_config.mean) and all(v == 1 for v in model_config.std)


def _has_batch_norm(model: torch.nn.Module) -> bool:
    """Whether evaluation answers from running statistics that training updates (batch norm)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _chance_warning(record: dict, *, raw_pixels: bool = False, batch_norm: bool = False) -> str:
    despite_training = (f"train-cam: warning: after {record['epoch']} epochs the validation loss "
                        f"{record['val_loss']:.4f} is no better than always answering each class's frequency "
                        f"({record['chance_loss']:.4f}), although the training loss fell to {record['train_loss']:.4f}")
    if record["train_loss"] < 0.5 * record["chance_loss"]:  # it fits its training images: not a dead run
        return (despite_training + ": the model does not generalise yet. A deep backbone "
                "trained from scratch often does so a few epochs later, once its batch-norm statistics settle; if it "
                "persists, lower --lr, add --weight-decay or train on more images")
    frozen = record.get("score_spread", 1.0) < FROZEN_SCORE_SPREAD
    learning = record["train_loss"] < AT_CHANCE_MARGIN * record["chance_loss"]
    if learning and batch_norm:
        # Evaluation uses batch norm's running statistics, which lag behind the weights in the first epochs:
        # MobileNetV3 from scratch on shapes (seed 2) answered every validation image alike at epoch 2 and
        # was worse than the prior at epoch 3 while its training loss fell, and went on to learn the set.
        return (despite_training
                + (f" (P(present) varies by {record['score_spread']:.2g} between validation images)" if frozen else "")
                + ": the model learns on its training batches, and its evaluation-mode output has not caught up. "
                "With batch norm that is usually the running statistics lagging in the first epochs; let it run. "
                "If it stays so, lower --lr or add --weight-decay; see docs/method.md, 'Training that fails'")
    if frozen and not learning:  # dead ReLUs answer their training batches alike too: that loss cannot fall
        return (f"train-cam: warning: after {record['epoch']} epochs the model gives every validation image the same "
                f"answer (P(present) varies by {record['score_spread']:.2g} between images) at the class-prior loss "
                f"({record['val_loss']:.4f} against {record['chance_loss']:.4f}): its ReLUs have most likely died, and "
                "more epochs will not revive them. Stop and start again "
                + ("with --input-norm measured (the network sees raw pixels), or " if raw_pixels else "with ")
                + "a learning rate 3x lower (--lr) or another --seed; see docs/method.md, 'Training that fails'")
    return (f"train-cam: warning: after {record['epoch']} epochs the validation loss {record['val_loss']:.4f} is no better "
            f"than always answering each class's frequency ({record['chance_loss']:.4f}): the model has learned "
            "almost nothing so far, and such CAMs give few or no right boxes. "
            + ("The network sees raw pixels: first try --input-norm measured (un-centred input can kill the ReLUs of "
               "a network without batch norm), then " if raw_pixels else "Try ")
            + "another --seed, a learning rate 3x lower or higher (--lr), or more --warmup-epochs; see docs/method.md, "
            "'Training that fails'")


def _epoch_line(record: dict, epochs: int) -> str:
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  val loss {record['val_loss']:.4f}  "
            f"AP cls {100 * record['val_classification_ap']:.1f}  pin {100 * record['val_pinpoint_ap']:.1f}  "
            f"extent {100 * record['val_extent_ap']:.1f} ({_settings_note(record)})  ({record['seconds']:.0f}s)")


def _settings_note(record: dict) -> str:
    """r, and the projection, relative floor and confidence form where they are not the paper's / the default."""
    notes = [f"r={record['ratio']:g}" if record.get("ratio_y") in (None, "") else
             f"r={record['ratio']:g} wide, {record['ratio_y']:g} high"]
    if record["projection"] != PROJECTIONS[0]:
        notes.append(record["projection"])
    if record["relative_floor"]:
        notes.append(f"floor {record['relative_floor']:g}×peak")
    if record.get("confidence_form") == "peak":
        notes.append("confidence from the peak")
    return ", ".join(notes)


def _append_csv(path: Path, record: dict) -> None:
    """One row per epoch. A resumed run keeps the columns its log.csv began with (one written by an
    older train-cam may lack a newer column), so every row lines up with the header."""
    fresh = not path.exists() or path.stat().st_size == 0
    fields = list(record)
    if not fresh:
        with path.open(newline="") as handle:
            fields = next(csv.reader(handle), None) or fields
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore", restval="")
        if fresh:
            writer.writeheader()
        writer.writerow(record)


def _check_run_folder(config: TrainConfig, ckpt_path: Path) -> None:
    """Before any work: a new run never replaces an earlier one unasked, and --resume needs one."""
    if config.resume and config.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if config.resume and not ckpt_path.is_file():
        raise ConfigError(f"--resume: there is no {ckpt_path} to continue; drop --resume to start a new run there")
    if not config.resume and not config.overwrite and ckpt_path.exists():
        raise ConfigError(f"{ckpt_path} already holds a run: continue it with --resume, replace it with --overwrite, "
                         "or give another --out")


def _resume(path: Path, model, optimizer, scheduler, model_config: ModelConfig) -> int:
    payload = load_checkpoint(path)
    tuned = {name: None for name in BoxSettings().fields()}  # chosen on validation, not by the user
    stored, wanted = payload["config"].to_dict() | tuned, model_config.to_dict() | tuned
    if stored != wanted:
        differ = ", ".join(f"{k} {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in sorted(set(stored) | set(wanted))
                           if stored.get(k) != wanted.get(k))
        raw_before = all(m == 0 for m in stored["mean"]) and all(v == 1 for v in stored["std"])
        hint = (" (it saw raw pixels, as runs on folder:, csv: and voc: data did before --input-norm: resume it with "
                "--input-norm none)") if raw_before and not _raw_pixels(model_config) else ""
        raise ConfigError(f"--resume: {path} was trained with a different model config ({differ}){hint}; give the "
                          "same options or use another --out")
    state = payload.get("training_state")
    if not state:
        raise ConfigError(f"--resume: {path} holds no optimizer state (rewritten by an older eval-cam --tune-ratio?)")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    print(f"train-cam: resumed from {path} after epoch {state['epoch']}", flush=True)
    return int(state["epoch"])


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("train-cam: --tensorboard needs the tensorboard package (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _warn_unusable(model) -> None:
    for name, threshold in zip(model.config.classes, model.thresholds()):
        if threshold is None:
            print(f"train-cam: warning: class {name!r} has a non-positive output slope (a_c <= 0), so its CAM "
                  "threshold is meaningless; it will not be localized. Train longer or check its labels.")


def _plain(value):
    """JSON-safe copy (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
