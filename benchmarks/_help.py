"""Shared by the benchmark scripts' command lines."""
from __future__ import annotations

import argparse


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the module docstring as written and every option's default."""
