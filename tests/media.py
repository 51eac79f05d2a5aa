"""Test media made from real MNIST digits: a video of a moving digit with known boxes, an MJPEG feed,
and frame counting (what a player would show); a real headless browser to play or load what we
serve. Shared by the edge_app tests and the fault suite."""
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_app.outputs import MjpegServer


def moving_digits_video(path: Path, mnist_digits, frames: int = 120, size: int = 256) -> list[np.ndarray]:
    """A real MNIST 3 (twice MNIST size) moving on a black frame, plus a moving 7 as a distractor.
    Returns the 3's ground-truth box per frame, in frame pixels (x1, y1 exclusive): the pasted patch,
    MNIST128's ground truth (docs/method.md), here 56 x 56."""
    digits, labels = mnist_digits
    three, seven = digits[np.flatnonzero(labels == 3)[5]], digits[np.flatnonzero(labels == 7)[5]]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (size, size))
    boxes = []
    for t in range(frames):
        canvas = np.zeros((size, size), np.uint8)
        x, y = int(8 + t * (size - 72) / frames), int(size / 2 - 28 + (size / 2 - 30) * np.sin(t / 12))
        big = cv2.resize((three * 255).astype(np.uint8), (56, 56), interpolation=cv2.INTER_NEAREST)
        canvas[y : y + 56, x : x + 56] = big
        boxes.append(np.array([x, y, x + 56, y + 56], dtype=float))
        sx, sy = size - 64 - x // 2, 8 + t % 40
        if abs(sx - x) > 70 or abs(sy - y) > 70:
            canvas[sy : sy + 56, sx : sx + 56] = np.maximum(
                canvas[sy : sy + 56, sx : sx + 56], cv2.resize((seven * 255).astype(np.uint8), (56, 56)))
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    writer.release()
    return boxes


def x264_settings(path: Path) -> str:
    """The settings x264 writes into the stream it encodes (an SEI message: "... options: cabac=0 ...")."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\0", start)].decode("ascii", "replace")


def headless_browser() -> str:
    """Debian's chromium (make setup installs it); the test skips, saying so, where there is none."""
    import pytest

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser: apt-get install chromium (pages and clips are tested in a real one)")


def browser_dom(url: str, *extra: str, budget_ms: int = 4000) -> str:
    """The page's DOM after `budget_ms` of the browser's virtual time (its scripts have run)."""
    return subprocess.run([headless_browser(), "--headless", "--no-sandbox", "--disable-gpu", *extra,
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60).stdout


def interrupt_when_written(process: subprocess.Popen, jsonl: Path, lines: int = 30) -> tuple[str, str]:
    """SIGINT to a running edge_app once `jsonl` has `lines` lines (or after 60 s); its stdout, stderr."""
    import signal

    deadline = time.time() + 60
    while (not jsonl.exists() or jsonl.read_text().count("\n") < lines) and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=60)


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def feed(server: MjpegServer, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        frame = np.zeros((128, 128, 3), np.uint8)
        cv2.putText(frame, str(i % 10), (40, 90), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 4)
        server.write(frame)
        i += 1
        time.sleep(0.02)



def crossing_digits_video(path: Path, mnist_digits, frames: int = 160, size: int = 256, fps: int = 25,
                          speed: float = 3.0, start_b: int = 20) -> list[dict[int, np.ndarray]]:
    """Two real MNIST 3s (56 x 56 patches) that enter, cross and leave: A from the left edge along
    y = 40 from frame 0, B from the right edge along y = 150 from frame `start_b`, so that they pass
    each other mid-frame; and a 7 that stays, as a distractor of another class. Returns, per frame, each
    visible 3's ground-truth box (object id -> x0, y0, x1, y1, clipped to the frame), counting an
    object only while at least half of it is inside."""
    digits, labels = mnist_digits
    threes = digits[np.flatnonzero(labels == 3)[[5, 9]]]
    seven = digits[np.flatnonzero(labels == 7)[5]]
    patch = lambda d: cv2.resize((d * 255).astype(np.uint8), (56, 56), interpolation=cv2.INTER_NEAREST)  # noqa: E731
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    truth = []
    for t in range(frames):
        canvas = np.zeros((size, size), np.uint8)
        canvas[180:236, 20:76] = patch(seven)
        visible = {}
        for obj, (x, y) in enumerate([(-56 + speed * t, 40), (size - speed * (t - start_b), 150)]):
            x = int(round(x))
            x0, x1 = max(0, x), min(size, x + 56)
            if x > size:  # not in yet
                continue
            if x1 - x0 <= 0:
                continue
            canvas[y : y + 56, x0:x1] = np.maximum(canvas[y : y + 56, x0:x1], patch(threes[obj])[:, x0 - x : x1 - x])
            if x1 - x0 >= 28:
                visible[obj] = np.array([x0, y, x1, y + 56], dtype=float)
        truth.append(visible)
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
    writer.release()
    return truth
