"""Shared by the speed benchmarks (edge_app, multi_stream, triton): the generated 640x480 video and
models with random weights exported to ONNX (speed does not depend on the weights)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_video(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for t in range(frames):
        frame = np.full((480, 640, 3), 30, np.uint8)
        for k in range(3):
            x, y = int(80 + 200 * k + 60 * np.sin(t / 20 + k)), int(200 + 120 * np.cos(t / 25 + k))
            cv2.putText(frame, str((t // 30 + k) % 10), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 8)
        frame = cv2.add(frame, rng.integers(0, 20, frame.shape, dtype=np.uint8))
        writer.write(frame)
    writer.release()


def random_onnx(work: Path, name: str, size: int) -> Path:
    """An untrained model exported to ONNX (speed only)."""
    import torch

    from export.onnx_export import export_onnx
    from training.checkpoint import save_checkpoint
    from training.model import ModelConfig, build_model, default_normalisation

    channels = 1 if name == "lenet" else 3
    mean, std = default_normalisation(name, channels)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=name, classes=["3"], input_size=[size, size], in_channels=channels,
                                    mean=mean, std=std))
    return export_onnx(save_checkpoint(work / f"{name}.pt", model), work / f"{name}{size}.onnx")
