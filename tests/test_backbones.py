"""Backbones: torchvision definitions, local weights, ImageNet weights offline, the CAM model's shapes."""
import pytest
import torch
import torchvision

from runtime.errors import ConfigError
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


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "vgg16"])
def test_output_stride_16_doubles_the_cam_and_keeps_the_weights(name):
    from runtime.geometry import chain_affine
    from training.backbones import build_backbone
    from training.geometry import extract_chain

    native, _ = build_backbone(name)
    fine, _ = build_backbone(name, output_stride=16)
    with torch.no_grad():
        assert native.eval()(torch.zeros(1, 3, 128, 128)).shape[-1] == 4
        assert fine.eval()(torch.zeros(1, 3, 128, 128)).shape[-1] == 8
    assert chain_affine(extract_chain(native))[0] == 32 and chain_affine(extract_chain(fine))[0] == 16
    same = {k: v.shape for k, v in native.state_dict().items()} == {k: v.shape for k, v in fine.state_dict().items()}
    assert same  # ImageNet (or local) weights load into the stride-16 network unchanged


def test_output_stride_is_refused_where_it_cannot_apply():
    from training.backbones import build_backbone

    with pytest.raises(ConfigError, match="output-stride 16 is for the deep backbones"):
        build_backbone("lenet", in_channels=1, output_stride=16)
    with pytest.raises(ConfigError):
        build_backbone("resnet18", output_stride=8)
