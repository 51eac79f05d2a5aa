"""`train-cam`: train a CAM localizer from image-level labels."""
from __future__ import annotations

import argparse
import sys

from runtime.cli import min_max, number, run_cli
from runtime.errors import ConfigError

from .backbones import BACKBONES
from .data.mnist128 import GT_BOXES, parse_positive
from .data.registry import DATASET_HELP
from .pooling import POOLING_MODES, parse_kernels
from .train import TrainConfig, train

EXAMPLES = """examples:
  train-cam                                     # embedded digits, LeNet + SPAM, 10 epochs
  fetch-mnist && train-cam --dataset mnist128 --pooling gmp --out runs/gmp
  train-cam --dataset mnist128 --mnist-dir ~/data/mnist      # standard IDX files
  train-cam --dataset voc:~/VOCdevkit/VOC2007 --backbone vgg16 --weights vgg16.pth --optimizer sgd --lr 0.01
  train-cam --dataset folder:~/cctv --backbone mobilenet_v3_large --input-size 320
  torchrun --nproc_per_node 2 -m training.cli --dataset mnist128 --out runs/ddp   # data-parallel
  train-cam --out runs/cam --epochs 20 --resume   # continue runs/cam/ckpt.pt
  train-cam --out runs/cam --overwrite            # start runs/cam over (an existing run is otherwise refused)

Writes OUT/ckpt.pt (weights + config, loaded with torch.load(weights_only=True)) and OUT/log.csv.
"""


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="train-cam", description="Train a weakly supervised CAM localizer "
                                "(Gudi et al., BMVC 2017) from image-level labels only.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=d.dataset, help=f"one of: {DATASET_HELP} (default: %(default)s)")
    data.add_argument("--mnist-dir", help="folder with the four MNIST IDX files (raw or .gz) for --dataset mnist128")
    data.add_argument("--mnist-box", default=d.mnist_box, choices=GT_BOXES,
                      help="MNIST128 ground truth for validation and r: the pasted 28x28 patch (default) or the "
                      "digit's tight ink box")
    data.add_argument("--positive", type=_positive, default=d.positive, metavar="DIGIT|all",
                      help="MNIST128's positive digit (default: 3), or 'all': every digit its own class, the "
                      "multi-class set (use with --objects 1,3)")
    data.add_argument("--objects", type=min_max, default=(1, 1), metavar="MIN,MAX", help="MIN,MAX digits per MNIST128 canvas (default: 1,1)")
    data.add_argument("--limit", action="append", type=_split_limit, default=[], metavar="SPLIT=N",
                      help="cap a split's size, e.g. --limit train=2000 (repeatable)")
    data.add_argument("--no-balance", action="store_true", help="plain shuffling instead of balanced present/absent draws")
    data.add_argument("--epoch-samples", type=number(int, minimum=1), metavar="N",
                      help="images drawn per epoch (default: the whole train split; single process only)")
    model = p.add_argument_group("model")
    model.add_argument("--backbone", default=d.backbone, choices=list(BACKBONES))
    model.add_argument("--pooling", default=d.pooling, choices=POOLING_MODES)
    model.add_argument("--spam-kernels", default=d.spam_kernels, help="SPAM pyramid, 'N' = whole map (default: %(default)s)")
    model.add_argument("--input-size", type=number(int, minimum=16), nargs="+", metavar="PX", help="H [W]; default: the dataset's")
    model.add_argument("--pretrained", default=d.pretrained, choices=["none", "imagenet"],
                       help="ImageNet weights from torchvision (needs the network or torch's cache)")
    model.add_argument("--weights", help="local state_dict for the backbone (full torchvision model or features)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=number(int, minimum=1), default=d.epochs)
    opt.add_argument("--batch-size", type=number(int, minimum=1), default=d.batch_size, help="per process")
    opt.add_argument("--optimizer", default=d.optimizer, choices=["adam", "adamw", "sgd"])
    opt.add_argument("--lr", type=number(float, above=0), default=d.lr)
    opt.add_argument("--momentum", type=number(float, minimum=0), default=d.momentum)
    opt.add_argument("--weight-decay", type=number(float, minimum=0), default=d.weight_decay)
    opt.add_argument("--schedule", default=d.schedule, choices=["cosine", "step", "none"])
    opt.add_argument("--warmup-epochs", type=number(float, minimum=0), default=d.warmup_epochs,
                     help="linear learning-rate warm-up, in epochs (default: %(default)s)")
    opt.add_argument("--output-lr-scale", type=number(float, above=0), default=d.output_lr_scale,
                     help="learning rate of the output affine (never weight-decayed) relative to --lr (default: %(default)s)")
    run = p.add_argument_group("run")
    run.add_argument("--out", default=d.out, help="output folder (default: %(default)s)")
    run.add_argument("--seed", type=number(int, minimum=0), default=d.seed)
    run.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 (default: auto)")
    run.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    run.add_argument("--workers", type=number(int, minimum=0), default=d.workers, help="data loader processes")
    run.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in OUT (without it, an existing OUT/ckpt.pt is refused)")
    run.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)")
    run.add_argument("--tolerance", type=number(float, minimum=0), default=d.tolerance, help="pin-pointing tolerance in pixels")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _positive(text: str) -> int | str:
    try:
        return parse_positive(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--positive takes ")) from None


def _split_limit(text: str) -> tuple[str, int]:
    """An argparse type for --limit SPLIT=N."""
    split, _, count = text.partition("=")
    if split not in ("train", "val", "test") or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not SPLIT=N with SPLIT train, val or test and N >= 1 "
                                         "(e.g. train=2000)")
    return split, int(count)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    objects, limits = args.objects, dict(args.limit)
    parse_kernels(args.spam_kernels)
    size = None
    if args.input_size:
        size = [args.input_size[0], args.input_size[-1]]
    return TrainConfig(
        dataset=args.dataset, out=args.out, backbone=args.backbone, pooling=args.pooling,
        spam_kernels=args.spam_kernels, input_size=size, pretrained=args.pretrained, weights=args.weights,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        output_lr_scale=args.output_lr_scale, seed=args.seed, device=args.device,
        amp=not args.no_amp, workers=args.workers, resume=args.resume, overwrite=args.overwrite, tensorboard=args.tensorboard,
        positive=args.positive, objects=objects, mnist_dir=args.mnist_dir, limits=limits,
        tolerance=args.tolerance, progress=not args.no_progress, balance=not args.no_balance,
        epoch_samples=args.epoch_samples, mnist_box=args.mnist_box,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        record = train(config_from_args(args))
        if record.get("rank", 0) == 0:
            print(f"train-cam: checkpoint {record['checkpoint']}")
        return 0

    return run_cli("train-cam", work, interrupted="the last completed epoch's checkpoint is kept (continue with --resume)")


if __name__ == "__main__":
    sys.exit(main())
