"""`ckpt.pt`: weights plus a JSON-serialisable config, the contract between training and export.

Loaded with `torch.load(weights_only=True)` only, so a tampered file can never run pickled code; a
truncated, foreign or tampered file is refused with a message that says what it is and what to do.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import CamNet, ModelConfig, build_model
from runtime.errors import ModelError
from runtime.output_paths import replace_atomically

__all__ = ["CheckpointError", "FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "load_model", "deploy_info"]

FORMAT = "spamcam-ckpt"
VERSION = 1


class CheckpointError(ModelError):
    """The file is not a checkpoint spamcam can use; the message says why and what to do."""


def deploy_info(model: CamNet) -> dict[str, Any]:
    """What post-processing needs beyond the config: thresholds and the output affine per class."""
    slopes, intercepts = model.output_affine()
    thresholds = model.thresholds()
    return {
        "thresholds": thresholds,
        "slopes": [float(v) for v in slopes],
        "intercepts": [float(v) for v in intercepts],
        # a_c <= 0 means "present" never rises with the CAM: such a class cannot localize.
        "unusable_classes": [model.config.classes[i] for i, t in enumerate(thresholds) if t is None],
    }


def save_checkpoint(path: str | Path, model: CamNet, *, extra: dict[str, Any] | None = None,
                    training_state: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename): an interrupted save never destroys the previous one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(model.config.to_dict()),
        "deploy": json.dumps(deploy_info(model)),
        "extra": json.dumps(extra or {}),
        # contiguous: a checkpoint trained channels_last loads and exports like any other
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return replace_atomically(path, lambda temporary: torch.save(payload, temporary))  # the earlier one, or this one


REQUIRED_CONFIG = ("backbone", "classes", "pooling", "input_size", "in_channels", "geometry")


def _check_deploy(deploy: Any, classes: int) -> None:
    if not isinstance(deploy, dict):
        raise ValueError(f"its deploy section is a {type(deploy).__name__}, not an object")
    for key in ("thresholds", "slopes", "intercepts"):
        if not isinstance(deploy.get(key), list) or len(deploy[key]) != classes:
            raise ValueError(f"its deploy section needs '{key}' with one value per class ({classes}), got {deploy.get(key)!r}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload with config/deploy/extra parsed; raises CheckpointError with advice."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index sits at the end
        head = path.read_bytes()[:2]
        if head[:1] == b"\x80":
            raise CheckpointError(f"{path}: a bare Python pickle, not a spamcam checkpoint; refused without "
                                  "unpickling it (loading it could run arbitrary code)")
        raise CheckpointError(f"{path}: not a complete PyTorch file; it is truncated or corrupt (an interrupted "
                              "copy or download?). Copy it again or retrain.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load. It contains Python objects other than tensors and plain data, so it was "
            f"not written by spamcam or has been tampered with; loading it could run arbitrary code. "
            f"({str(error).strip().splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch file; it is truncated or corrupt (an interrupted copy?). "
            f"Copy it again or retrain. ({str(error).strip().splitlines()[0]})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a PyTorch file, but not a spamcam checkpoint (no '{FORMAT}' marker). "
            "Train one with `train-cam`, or load plain backbone weights with `train-cam --weights`."
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')}, this spamcam reads {VERSION}")
    try:
        for key in ("config", "deploy", "extra"):
            payload[key] = json.loads(payload[key])
        missing = [key for key in REQUIRED_CONFIG if key not in payload["config"]]
        if missing:  # the dataclass defaults (classes ['3'], ...) would stand in for them silently
            raise ValueError(f"its config lacks {', '.join(missing)}")
        payload["config"] = ModelConfig.from_dict(payload["config"])
        _check_deploy(payload["deploy"], len(payload["config"].classes))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({error})") from error
    if not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"{path}: checkpoint has no weights")
    return payload


def load_model(path: str | Path) -> tuple[CamNet, dict[str, Any]]:
    """Rebuild the network from the checkpoint's config and load its weights (eval mode)."""
    payload = load_checkpoint(path)
    model = build_model(payload["config"], pretrained="none")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit the stored config ({error}); the file was altered") from error
    return model.eval(), payload
