"""train-cam's input normalisation (training/input_norm.py): which statistics a model is given, and
that the measured ones are the training split's."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import ConfigError
from training.data.registry import load_splits
from training.input_norm import input_normalisation, measured_statistics, resolve_input_norm
from training.train import TrainConfig, _model_config


@pytest.mark.parametrize("backbone, dataset, expected", [
    ("lenet", "mnist128", "none"), ("lenet", "embedded", "none"), ("lenet_s4", "shapes", "none"),
    ("lenet", "voc:/data/VOC2007", "measured"), ("lenet", "folder:/data/birds", "measured"),
    ("lenet", "csv:/data/list.csv", "measured"), ("resnet18", "voc:/data/VOC2007", "imagenet"),
    ("mobilenet_v3_large", "shapes", "imagenet"),
])
def test_auto_resolves_by_backbone_and_dataset(backbone, dataset, expected):
    assert resolve_input_norm("auto", backbone, dataset) == expected
    assert resolve_input_norm("none", backbone, dataset) == "none"  # an explicit choice is kept


def test_measured_statistics_are_the_split_s_per_channel_mean_and_sd():
    splits = load_splits("shapes", seed=3, sizes={"train": 40, "val": 4, "test": 4})
    pixels = np.stack([splits.train[i].image for i in range(len(splits.train))])
    mean, std = measured_statistics(splits.train, 3)
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), atol=1e-5)
    assert len(set(mean)) == 3  # the shapes are coloured: each channel its own numbers
    # A sample spread through the split is close to the whole split's statistics.
    sampled_mean, sampled_std = measured_statistics(splits.train, 3, samples=10)
    np.testing.assert_allclose(sampled_mean, mean, atol=0.03)
    np.testing.assert_allclose(sampled_std, std, atol=0.03)


def test_a_constant_channel_is_not_divided_by_zero():
    class Flat:
        def __init__(self, image):
            self.image = image

    split = [Flat(np.full((1, 8, 8), 0.25, np.float32))] * 3
    mean, std = measured_statistics(split, 1)
    assert mean == [0.25] and std[0] > 0


def test_a_model_config_gets_the_resolved_statistics_and_refuses_contradictions():
    splits = load_splits("embedded", sizes={"train": 30, "val": 10, "test": 10})
    assert _model_config(TrainConfig(), splits).mean == [0.0]  # LeNet on a generated set: raw pixels
    measured = _model_config(TrainConfig(input_norm="measured"), splits)
    pixels = np.stack([splits.train[i].image for i in range(len(splits.train))])
    np.testing.assert_allclose(measured.mean, [pixels.mean()], atol=1e-5)
    np.testing.assert_allclose(measured.std, [pixels.std()], atol=1e-5)
    with pytest.raises(ConfigError, match="3-channel"):
        _model_config(TrainConfig(input_norm="imagenet"), splits)  # grey LeNet
    with pytest.raises(ConfigError, match="ImageNet weights"):
        _model_config(TrainConfig(backbone="resnet18", pretrained="imagenet", input_norm="measured"), splits)
    with pytest.raises(ValueError, match="must be one of"):
        input_normalisation("robust", splits.train, 1)
