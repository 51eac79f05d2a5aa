"""Backbones: torchvision definitions, local weights, ImageNet weights offline, the CAM model's shapes."""
import pytest
import torch
import torchvision

from training.backbones import build_backbone
from training.model import ModelConfig, build_model


def test_local_torchvision_state_dict_is_loaded(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    features, channels = build_backbone("resnet18", weights_path=tmp_path / "resnet18.pth")
    assert channels == 512
    torch.testing.assert_close(features[0].weight, reference.conv1.weight)  # the stem, remapped
    torch.testing.assert_close(features[7][1].conv2.weight, reference.layer4[1].conv2.weight)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="does not fit vgg16"):
        build_backbone("vgg16", weights_path=tmp_path / "resnet18.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable state_dict"):
        build_backbone("resnet18", weights_path=tmp_path / "junk.pth")


def test_imagenet_weights_offline_give_a_clear_error():
    try:
        build_backbone("resnet18", pretrained="imagenet")
    except RuntimeError as error:  # this machine is offline unless torch's cache holds the file
        assert "--weights PATH" in str(error)
    with pytest.raises(ValueError, match="no ImageNet weights for lenet"):
        build_backbone("lenet", pretrained="imagenet")
    with pytest.raises(ValueError, match="either"):
        build_backbone("resnet18", pretrained="imagenet", weights_path="x.pth")


@pytest.mark.parametrize("pooling", ["gmp", "gap", "spam"])
def test_multi_class_model_outputs(pooling):
    config = ModelConfig(backbone="mobilenet_v3_large", classes=[f"c{i}" for i in range(5)], pooling=pooling,
                         input_size=[160, 160], in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    model = build_model(config).eval()
    out = model(torch.rand(2, 3, 160, 160))
    assert out["logits"].shape == (2, 5, 2) and out["cam"].shape == (2, 5, 5, 5) and out["pooled"].shape == (2, 5)
    assert len(model.thresholds()) == 5
