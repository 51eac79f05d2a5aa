"""edge_app end to end: a generated video of moving real digits with known boxes, the MJPEG preview
over loopback HTTP, the Python API. Faults (kills, stalls, full disks, bad input): tests/faults/."""
import json
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.app import AppConfig, EdgeApp
from edge_app.cli import main as edge_cli
from runtime.metrics import box_iou

from media import frame_count, moving_digits_video, x264_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(mnist128_checkpoint, tmp_path_factory):
    from export.onnx_export import export_onnx

    return export_onnx(mnist128_checkpoint["checkpoint"], tmp_path_factory.mktemp("edge") / "model.onnx")


def test_detections_match_moving_digits_and_video_has_every_frame(model, mnist_digits, tmp_path, capsys):
    video = tmp_path / "moving.mp4"
    truth = moving_digits_video(video, mnist_digits)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(out), "--json", str(jsonl),
                     "--overlay", "heatmap"]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(len(truth)))
    hits = 0
    for record, box in zip(records, truth):
        threes = [d["box"] for d in record["detections"] if d["class"] == "3"]
        hits += bool(threes) and box_iou(np.array(threes), box[None]).max() >= 0.5
        assert set(record["latency_ms"]) == {"preprocess", "inference", "postprocess"}
        assert all(0.5 <= d["confidence"] <= 1 for d in record["detections"])  # each box's own P(present), gated
    assert hits >= 0.7 * len(truth), f"only {hits}/{len(truth)} frames localized the 3"  # "most frames"
    assert frame_count(out) == len(truth)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == len(truth) and summary["fps"] > 0 and summary["stage_ms"]["inference"] > 0


def test_mjpeg_preview_served_on_loopback(model, mnist_digits, tmp_path):
    video = tmp_path / "moving.mp4"
    moving_digits_video(video, mnist_digits, frames=400)
    app = EdgeApp(model, AppConfig(source=str(video), outputs=["http://127.0.0.1:0"]))
    thread = threading.Thread(target=app.run)
    logs = []
    app.log = logs.append
    thread.start()
    try:
        deadline = time.time() + 20
        while not any("preview at" in line for line in logs) and time.time() < deadline:
            time.sleep(0.05)
        url = next(line for line in logs if "preview at" in line).split("preview at ")[1]
        assert url.startswith("http://127.0.0.1:")
        jpeg = urllib.request.urlopen(url + "frame.jpg", timeout=10).read()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (256, 256, 3)
        with urllib.request.urlopen(url, timeout=10) as stream:  # the multipart MJPEG stream itself
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            chunk = stream.read(4096)
            assert b"--frame" in chunk and b"image/jpeg" in chunk
    finally:
        app.stop()
        thread.join(timeout=20)




@pytest.mark.parametrize("preset, subme", [(None, "subme=0"), ("veryfast", "subme=2")])
def test_mp4_outputs_are_encoded_with_the_video_preset(model, mnist_digits, tmp_path, preset, subme):
    pytest.importorskip("av", reason="MP4 through x264 needs PyAV (pip install 'spamcam[video]')")
    video = tmp_path / "moving.mp4"
    moving_digits_video(video, mnist_digits)
    out = tmp_path / "out.mp4"
    assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(out), "--max-frames", "20",
                     *(["--video-preset", preset] if preset else [])]) == 0
    assert subme in x264_settings(out).split()  # the default is x264's ultrafast (subme=0)
