"""Frame -> network input, and network-input boxes -> frame boxes.

One function serves training data, calibration, evaluation and the camera app, so what the model
saw in training is exactly what it sees on the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import DataError

__all__ = ["RESIZE_MODES", "Transform", "preprocess", "chw_with_channels"]

RESIZE_MODES = ("resize", "letterbox")


@dataclass(frozen=True)
class Transform:
    """How a frame was mapped onto the network input: input = frame * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    frame_width: int
    frame_height: int

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(K, 4) x0, y0, x1, y1 in input pixels -> frame pixels, clipped to the frame."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(boxes)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        out[:, 0::2] = out[:, 0::2].clip(0, self.frame_width)
        out[:, 1::2] = out[:, 1::2].clip(0, self.frame_height)
        return out

    def points_to_frame(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.stack([(points[:, 0] - self.pad_x) / self.scale_x, (points[:, 1] - self.pad_y) / self.scale_y], 1)

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(boxes)
        out[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return out


def preprocess(
    frame: np.ndarray, input_size: tuple[int, int], channels: int, mode: str = "resize"
) -> tuple[np.ndarray, Transform]:
    """BGR/grey uint8 or float [0, 1] frame -> (channels, H, W) float32 in [0, 1], plus its Transform.

    "resize" stretches to the input size (what the model is trained with by default); "letterbox"
    keeps the aspect ratio and pads with black, for cameras whose aspect differs from training's.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if frame is None or frame.size == 0 or frame.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {getattr(frame, 'shape', None)}")
    height, width = int(input_size[0]), int(input_size[1])
    frame_h, frame_w = frame.shape[:2]
    # Colour conversion and resizing run on the frame's own 8-bit pixels, and only the small result
    # becomes float: converting a whole 640x480 frame to float first moved ~19x more memory and cost
    # 4 ms of a 6 ms LeNet frame on a 2-core CPU (docs/benchmarks.md). Resizing 8-bit pixels rounds
    # to 1/255; training on image folders calls this same function, so train and deploy agree.
    image = _to_channels(_supported_pixels(frame), channels)
    if mode == "resize":
        scale_x, scale_y, pad_x, pad_y = width / frame_w, height / frame_h, 0, 0
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if scale_x < 1 else cv2.INTER_LINEAR)
    else:
        scale = min(width / frame_w, height / frame_h)
        new_w, new_h = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
        pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
        scale_x, scale_y = new_w / frame_w, new_h / frame_h
        inner = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        resized = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
        resized[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = inner
    if resized.ndim == 2:
        resized = resized[:, :, None]
    chw = np.ascontiguousarray(_to_float(resized).transpose(2, 0, 1))
    return chw, Transform(scale_x, scale_y, pad_x, pad_y, frame_w, frame_h)


def _supported_pixels(frame: np.ndarray) -> np.ndarray:
    """uint8 as it is; any float as float32 (what OpenCV's colour conversion accepts)."""
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        return frame.astype(np.float32, copy=False)
    raise ValueError(f"expected uint8 or float pixels, got {frame.dtype}")


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / np.float32(255.0) if image.dtype == np.uint8 else image


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> colour as the model needs; colour frames arrive BGR (OpenCV) and leave RGB."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if channels == 1:
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise ValueError(f"models take 1 or 3 input channels, got {channels}")


def chw_with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A (C, H, W) image with the model's channel count: grey repeated for an RGB model (MNIST-style
    data on a torchvision backbone); any other mismatch is an error."""
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return np.repeat(image, channels, axis=0)
    raise DataError(f"the data has {image.shape[0]} channels, the model takes {channels}")
