"""Reading image files: the suffixes spamcam takes, a size cap checked before decoding, 8-bit pixels.

Every tool that reads image files (training folders, calibration, edge_app's image sources) reads them
here, so that one bad file gets the same clear error everywhere:
- a file whose header announces more than `MAX_IMAGE_PIXELS` pixels is refused *before* decoding
  (a 20000x20000 PNG took 2.5 GB and then failed with an unrelated message);
- 16-bit images (PNG, TIFF) become 8-bit the way OpenCV converts them (the high byte), instead of
  failing later in pre-processing;
- "cannot read" says whether the file is missing, empty, too large or undecodable.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .errors import DataError, NotFoundError

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "ImageReadError", "image_size", "read_image", "is_image_file"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# 8192 x 8192: twice an 8K frame. Larger images are almost surely not camera frames (a map, a scan, a
# decompression bomb) and would take gigabytes to decode before being shrunk to the network's input.
MAX_IMAGE_PIXELS = 1 << 26
# OpenCV's own decoder cap (default 2^30) reads this once, at the first decode: set it before cv2 decodes
# anything, so that the formats parsed below only by OpenCV (TIFF, WebP) get the same cap.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

_MODES = ("color", "gray", "unchanged")


class ImageReadError(DataError):
    """An image file cannot be used; the message says which and why."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file header for PNG, JPEG, BMP and GIF without decoding; None when the
    header is not one of those (the decoder then decides)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head[:2] == b"BM" and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return abs(width), abs(height)
            if head[:6] in (b"GIF87a", b"GIF89a"):
                return struct.unpack("<HH", head[6:10])
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(handle)
    except (OSError, struct.error):
        return None
    return None


def _jpeg_size(handle) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame (SOF0-SOF15 except DHT/JPG/DAC)."""
    handle.seek(2)
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        length = struct.unpack(">H", handle.read(2))[0]
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">xHH", handle.read(5))
            return width, height
        handle.seek(length - 2, os.SEEK_CUR)


def read_image(path: str | Path, mode: str = "color") -> np.ndarray:
    """The image as 8-bit pixels: BGR (H, W, 3) for "color", (H, W) for "gray", as stored for
    "unchanged" (grey stays grey; an alpha channel is dropped). Raises ImageReadError (a DataError) saying what is wrong."""
    import cv2

    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (an interrupted copy?)")
    size = image_size(path)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageReadError(f"{path}: {size[0]}x{size[1]} pixels is more than the {MAX_IMAGE_PIXELS:,} spamcam "
                             "reads; scale it down first (camera frames are far smaller)")
    flags = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "unchanged": cv2.IMREAD_UNCHANGED}[mode]
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt, truncated, over {MAX_IMAGE_PIXELS:,} pixels, "
                             "or a format OpenCV cannot decode)")
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF: keep the high byte, as OpenCV's own 8-bit conversion does
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{path}: {image.dtype} pixels; spamcam reads 8- and 16-bit images")
    if mode == "unchanged" and image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)  # the alpha channel is not part of the scene
    return image
