"""`train-cam`: train a CAM localizer from image-level labels."""
from __future__ import annotations

import sys

from runtime.cli import run_cli
from runtime.config_cli import command_parser, parse_command

from .data.options import MNIST128_GROUP
from .train import TrainConfig, train

EXAMPLES = """examples:
  train-cam                                     # embedded digits, LeNet + SPAM, 10 epochs
  fetch-mnist && train-cam --dataset mnist128 --pooling gmp --out runs/gmp
  train-cam --dataset mnist128 --mnist-dir ~/data/mnist      # standard IDX files
  train-cam --dataset voc:~/VOCdevkit/VOC2007 --backbone vgg16 --weights vgg16.pth --optimizer sgd --lr 0.01
  train-cam --dataset folder:~/cctv --backbone mobilenet_v3_large --input-size 320
  train-cam --dataset shapes --objects 1,3 --backbone resnet18 --output-stride 16 --lr 1e-3 --epochs 8
  train-cam --dataset mnist128 --projection theoretical --relative-floor 0 --height-ratio same   # the paper's boxes: only r is tuned
  torchrun --nproc_per_node 2 -m training.cli --dataset mnist128 --out runs/ddp   # data-parallel
  train-cam --out runs/cam --epochs 20 --resume   # continue runs/cam/ckpt.pt
  train-cam --out runs/cam --overwrite            # start runs/cam over (an existing run is otherwise refused)

  train-cam --dataset mnist128 --epochs 4 --print-config > run.yaml   # the options as YAML
  train-cam --config run.yaml --seed 1                          # ... run from it; later options override

Writes OUT/ckpt.pt (weights + config, loaded with torch.load(weights_only=True)), OUT/log.csv and
OUT/config.yaml (the options it ran with: train-cam --config OUT/config.yaml runs it again).
"""


def build_parser():
    return command_parser(TrainConfig, prog="train-cam", description="Train a weakly supervised CAM localizer "
                          "(Gudi et al., BMVC 2017) from image-level labels only.", epilog=EXAMPLES,
                          groups=[MNIST128_GROUP])


def main(argv: list[str] | None = None) -> int:
    command = parse_command(build_parser(), argv)

    def work() -> int:
        record = train(command.config)
        if record.get("rank", 0) == 0:
            saved = command.save_beside(command.config.out, folder=True)
            print(f"train-cam: checkpoint {record['checkpoint']} (config: {saved})")
        return 0

    return run_cli("train-cam", work, interrupted="the last completed epoch's checkpoint is kept (continue with --resume)")


if __name__ == "__main__":
    sys.exit(main())
