"""Checkpoint round trip, and clear refusals of corrupt, foreign and tampered files."""
import json
import pickle

import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from training.model import ModelConfig, build_model


@pytest.fixture()
def saved(tmp_path):
    model = build_model(ModelConfig(classes=["3", "7"], pooling="spam"))
    with torch.no_grad():
        model.out_bias[:, 1] = torch.tensor([0.3, -0.2])
    model.config.ratio = 0.45
    path = save_checkpoint(tmp_path / "ckpt.pt", model)
    return model, path


def test_round_trip_restores_weights_config_and_thresholds(saved):
    model, path = saved
    loaded, payload = load_model(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert loaded.config.to_dict() == model.config.to_dict()
    assert loaded.config.geometry == [[5, 1, 0], [2, 2, 0], [5, 1, 0], [2, 2, 0], [5, 1, 0], [1, 1, 0]]
    # t_c = -b_c / a_c with a_c = w_present - w_absent = 1, b_c = bias_present - bias_absent
    assert payload["deploy"]["thresholds"] == pytest.approx([-0.3, 0.2])
    images = torch.rand(2, 1, 128, 128)
    torch.testing.assert_close(loaded(images)["logits"], model.eval()(images)["logits"])


def test_truncated_file(saved, tmp_path):
    _, path = saved
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(broken)


def test_foreign_pytorch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a spamcam checkpoint"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: call a function on load
        return (open, (str(_Payload.marker), "w"))


def test_pickled_code_is_never_run(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "spamcam-ckpt", "evil": _Payload()}, path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_checkpoint(path)
    assert not _Payload.marker.exists()
    path.write_bytes(pickle.dumps({"format": "spamcam-ckpt", "evil": _Payload()}))  # a bare pickle
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not _Payload.marker.exists()


def test_tampered_weights_and_config(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["cam_head.weight"] = torch.zeros(5, 120, 1, 1)
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "tampered.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"] = payload["config"].replace('"pooling": "spam"', '"pooling": "median"')
    torch.save(payload, tmp_path / "tampered2.pt")
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "tampered2.pt")


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.update(config=json.dumps({k: v for k, v in json.loads(p["config"]).items() if k != "classes"})),
     "config lacks classes"),  # would have become the default ['3'] silently
    (lambda p: p.update(deploy="{}"), "needs 'thresholds'"),  # a KeyError before
    (lambda p: p.update(deploy="[1, 2]"), "deploy section is a list"),
    (lambda p: p.update(deploy=json.dumps({"thresholds": [0.1], "slopes": [1.0], "intercepts": [0.0]})),
     "one value per class \\(2\\)"),
])
def test_incomplete_checkpoint_metadata_is_refused_not_defaulted(saved, tmp_path, damage, message):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    damage(payload)
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "damaged.pt")
