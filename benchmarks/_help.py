"""Shared by the benchmark scripts' command lines."""
from __future__ import annotations

import argparse


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the module docstring as written and every option's default."""


def comma_subset(allowed: tuple[str, ...]):
    """An argparse `type`: "a,b" -> ("a", "b"), each in `allowed` and in `allowed`'s order. Checked
    while the command line is parsed, so a typo stops the benchmark before it writes or trains anything."""

    def parse(value: str) -> tuple[str, ...]:
        given = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in given if v not in allowed]
        if not given or unknown:
            raise argparse.ArgumentTypeError(f"{value!r}: give a comma-separated subset of {','.join(allowed)}")
        return tuple(v for v in allowed if v in given)

    return parse
