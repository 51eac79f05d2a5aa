"""Many cameras, one model (edge_app/multi.py): a YAML config as a user writes it, with video files and
a live MJPEG stream that is killed and restarted; results routed to the right camera (equal to one
camera at a time); the web page in a real headless browser (Debian's chromium); /metrics parsed with
prometheus-client's own parser; bad camera configs refused by where they are."""
import json
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from edge_app.app import AppConfig, EdgeApp
from edge_app.camera_config import camera_configs, camera_list
from edge_app.cli import main as edge_cli
from edge_app.camera_stream import DropOldestQueue
from edge_app.multi import BatchSettings, MultiCameraApp
from edge_app.outputs import MjpegServer
from brokers import free_port
from media import (browser_dom, crossing_digits_video, feed, frame_count, headless_browser, interrupt_when_written,
                   moving_digits_video)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(exported):
    return exported


@pytest.fixture(scope="module")
def videos(mnist_digits, tmp_path_factory):
    """Three different videos (different lengths and motions), so that a mix-up between cameras shows."""
    folder = tmp_path_factory.mktemp("cameras")
    paths = [folder / "door.mp4", folder / "garden.mp4", folder / "street.mp4"]
    moving_digits_video(paths[0], mnist_digits, frames=50)
    moving_digits_video(paths[1], mnist_digits, frames=70, size=320)
    crossing_digits_video(paths[2], mnist_digits, frames=60)
    return paths


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _boxes(records: list[dict]) -> list:
    return [[(d["class"], d["box"], d["confidence"]) for d in r["detections"]] for r in records]


@pytest.mark.parametrize("inference_threads", [1, 2])
def test_each_camera_gets_its_own_results_equal_to_one_camera_at_a_time(model, videos, tmp_path, inference_threads):
    """Batched across cameras (one batcher, or two running at once), every camera's JSON lines equal
    what the single-camera loop gives for its video alone: same frames, same boxes, same confidences,
    its own --conf."""
    configs = [AppConfig(source=str(v), camera=v.stem, json=str(tmp_path / f"{v.stem}.jsonl"),
                         min_confidence=conf) for v, conf in zip(videos, (0.5, 0.95, 0.5))]
    summary = MultiCameraApp(model, configs, batch=BatchSettings(max_batch=3, max_wait_ms=50,
                                                                 inference_threads=inference_threads)).run()
    if inference_threads == 1:
        assert summary.batched_frames / summary.batches > 1.5  # frames of several cameras did share calls
    assert not summary.failed_outputs
    for config, video in zip(configs, videos):
        alone = tmp_path / f"alone-{video.stem}.jsonl"
        EdgeApp(model, AppConfig(source=str(video), json=str(alone), min_confidence=config.min_confidence)).run()
        batched, single = _lines(Path(config.json)), _lines(alone)
        assert len(batched) == len(single) == frame_count(video)  # files: nothing dropped
        assert all(r["camera"] == video.stem for r in batched)
        assert [r["frame"] for r in batched] == list(range(len(single)))
        assert _boxes(batched) == _boxes(single)
        assert sum(map(len, _boxes(batched))) > 0
    garden = _lines(tmp_path / "garden.jsonl")
    assert all(d["confidence"] >= 0.95 for r in garden for d in r["detections"])


def test_yaml_config_with_files_and_a_live_stream_that_is_killed_and_restarted(model, videos, tmp_path, capsys):
    server = MjpegServer("127.0.0.1", 0)
    port = server.address[1]
    stop = threading.Event()
    threading.Thread(target=feed, args=(server, stop), daemon=True).start()
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(yaml.safe_dump({"cameras": [
        {"name": "door", "source": str(videos[0]), "outputs": [str(tmp_path / "door.mp4")]},
        {"name": "garden", "source": str(videos[1]), "conf": 0.9, "realtime": True},
        {"source": str(videos[2])},
        {"name": "drone", "source": f"http://127.0.0.1:{port}/stream.mjpg", "max_frames": 150,
         "reconnect_timeout": 20},
    ]}))
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("rc", edge_cli(
        ["--model", str(model), "--cameras", str(cameras), "--json", str(tmp_path / "{camera}.jsonl"),
         "--summary-every", "1"])))
    thread.start()
    time.sleep(2.5)
    stop.set()
    server.close()  # the drone's stream goes away ...
    time.sleep(1.5)
    stop2 = threading.Event()
    server2 = MjpegServer("127.0.0.1", port)  # ... and comes back on the same address
    threading.Thread(target=feed, args=(server2, stop2), daemon=True).start()
    thread.join(timeout=120)
    stop2.set()
    server2.close()
    assert done.get("rc") == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert summary["cameras"]["drone"]["reconnects"] >= 1
    assert sorted(summary["cameras"]) == ["door", "drone", "garden", "street"]
    assert (tmp_path / "drone.jsonl.config.yaml").is_file()  # the settings beside what it wrote
    lines = {name: _lines(tmp_path / f"{name}.jsonl") for name in ("door", "garden", "street", "drone")}
    assert len(lines["door"]) == frame_count(videos[0]) == frame_count(tmp_path / "door.mp4")
    assert len(lines["street"]) == frame_count(videos[2])
    assert 0 < len(lines["garden"]) <= frame_count(videos[1])  # realtime: what there was time for
    # 150 frames read; a live stream drops what the app cannot keep up with (a loaded machine, 149 written
    # once), and counts it (its source's own drops included): no frame may vanish uncounted
    dropped = sum(summary["cameras"]["drone"]["dropped_by_stage"].values())
    assert 0 < len(lines["drone"]) <= 150 <= len(lines["drone"]) + dropped
    assert all(d["confidence"] >= 0.9 for r in lines["garden"] for d in r["detections"])
    assert all(r["camera"] == name for name, records in lines.items() for r in records)


def test_live_stream_reconnect_is_counted_per_camera(model, videos, tmp_path):
    server = MjpegServer("127.0.0.1", 0)
    port = server.address[1]
    stop = threading.Event()
    threading.Thread(target=feed, args=(server, stop), daemon=True).start()
    configs = camera_configs(AppConfig(json=str(tmp_path / "{camera}.jsonl")), camera_list([
        {"name": "file", "source": str(videos[0]), "realtime": True},
        {"name": "live", "source": f"http://127.0.0.1:{port}/stream.mjpg", "max_frames": 120,
         "reconnect_timeout": 20}]))
    logs, result = [], {}
    app = MultiCameraApp(model, configs, log=logs.append)
    thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()))
    thread.start()
    time.sleep(2)
    stop.set()
    server.close()
    time.sleep(2.5)  # more than the 2 s after which a silent camera's FPS reads 0
    during = {c["name"]: c for c in app.state()["cameras"]}  # what the page and /metrics show meanwhile
    stop2 = threading.Event()
    server2 = MjpegServer("127.0.0.1", port)
    threading.Thread(target=feed, args=(server2, stop2), daemon=True).start()
    thread.join(timeout=90)
    assert during["live"]["reconnecting"] and not during["live"]["up"] and during["live"]["fps"] == 0
    stop2.set()
    server2.close()
    summary = result["summary"]
    assert summary.cameras["live"].reconnects >= 1 and summary.cameras["file"].reconnects == 0
    assert summary.cameras["live"].frames == 120
    assert any(line.startswith("edge_app: [live]") and "reopened" in line for line in logs)
    assert summary.cameras["file"].frames == len(_lines(tmp_path / "file.jsonl")) > 0


def test_web_page_in_a_real_browser_and_metrics(model, mnist_digits, tmp_path):
    headless_browser()
    pytest.importorskip("prometheus_client", reason="/metrics needs prometheus-client (spamcam[web], make setup)")
    videos = []
    for i in range(3):
        videos.append(tmp_path / f"cam{i}.mp4")
        moving_digits_video(videos[-1], mnist_digits, frames=400)
    configs = [AppConfig(source=str(v), camera=f"cam{i}", realtime=True) for i, v in enumerate(videos)]
    app = MultiCameraApp(model, configs, web="http://127.0.0.1:0")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()))
    thread.start()
    deadline = time.monotonic() + 30
    while app.web is None and time.monotonic() < deadline:
        time.sleep(0.05)
    url = app.web.url
    try:
        page = browser_dom(url)
        from prometheus_client.parser import text_string_to_metric_families

        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(
            urllib.request.urlopen(url + "metrics", timeout=10).read().decode()) for s in family.samples}
        state = json.loads(urllib.request.urlopen(url + "api/state", timeout=10).read())
    finally:
        app.stop("test")
        thread.join(timeout=60)
    tiles = re.findall(r'<div class="camera" data-name="(cam\d)">.*?data-loads="(\d+)".*?<ul class="detections">(.*?)</ul>',
                       page, re.S)
    assert [name for name, _, _ in tiles] == ["cam0", "cam1", "cam2"]
    assert all(int(loads) >= 3 for _, loads, _ in tiles), tiles  # each preview was reloaded: live images
    assert any("<li>3 " in detections for _, _, detections in tiles)  # the moving 3 is listed, with confidence
    for name in ("cam0", "cam1", "cam2"):
        assert metrics[("edge_app_frames_total", (("camera", name),))] > 10
        assert ("edge_app_dropped_frames_total", (("camera", name), ("stage", "source"))) in metrics
        assert metrics[("edge_app_stage_seconds_count", (("camera", name), ("stage", "inference")))] > 10
        assert metrics[("edge_app_latency_seconds_count", (("camera", name),))] > 10
    assert metrics[("edge_app_batch_size_count", ())] > 10
    assert [c["name"] for c in state["cameras"]] == ["cam0", "cam1", "cam2"] and state["batches"] > 0
    assert result["summary"].stopped_by == "test"


@pytest.mark.parametrize("cameras, message", [
    ([{"name": "a", "source": "x.mp4", "colour": "red"}], "cameras[0]: unknown key 'colour'"),
    ([{"name": "a"}], "cameras[0]: no source"),
    ([{"source": "x.mp4", "fps": -3}], "cameras[0].fps"),
    ([{"source": "x.mp4", "flip": "sideways"}], "cameras[0].flip"),
    ([{"name": "a", "source": "x.mp4"}, {"name": "a", "source": "y.mp4"}], "name 'a' is taken"),
])
def test_bad_camera_configs_are_refused_by_where_they_are(model, tmp_path, capsys, cameras, message):
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"cameras": cameras}))
    with pytest.raises(SystemExit) as exit_info:
        edge_cli(["--model", str(model), "--cameras", str(config)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_every_camera_would_write_is_refused_before_anything_runs(model, videos, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        edge_cli(["--model", str(model), "--source", str(videos[0]), "--source", str(videos[1]), "--json", str(out)])
    assert exit_info.value.code == 2
    assert "put {camera} in it" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:  # one MQTT client ID for every camera: the broker would kick them
        edge_cli(["--model", str(model), "--source", str(videos[0]), "--source", str(videos[1]),
                  "--mqtt", "mqtt://127.0.0.1", "--mqtt-client-id", "site"])
    assert exit_info.value.code == 2 and "every camera's MQTT client ID" in capsys.readouterr().err


def test_drop_oldest_queue_counts_what_it_drops():
    stop = threading.Event()
    q = DropOldestQueue(2)
    for item in range(5):
        q.put(item, block=False, stop=stop)
    assert q.dropped == 3 and [q.get_nowait(), q.get_nowait()] == [3, 4]


def test_sigint_stops_every_camera_cleanly(model, mnist_digits, tmp_path):
    """Ctrl-C on a multi-camera run: exit 0, every camera's JSON lines whole and in order, its video
    finalised with exactly the frames the JSON lines report."""
    import os
    import sys

    long_videos = []
    for i in range(2):
        long_videos.append(tmp_path / f"long{i}.mp4")
        moving_digits_video(long_videos[-1], mnist_digits, frames=600)
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "edge_app", "--model", str(model),
                                "--source", str(long_videos[0]), "--source", str(long_videos[1]), "--realtime",
                                "--json", str(tmp_path / "{camera}.jsonl"), "--output", str(tmp_path / "out" / "{camera}.mp4")],
                               env=dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = interrupt_when_written(process, tmp_path / "long0.jsonl")
    assert process.returncode == 0, stderr
    assert "done (SIGINT)" in stderr
    for name in ("long0", "long1"):
        records = _lines(tmp_path / f"{name}.jsonl")
        assert 10 <= len(records) < 600
        assert [r["frame"] for r in records] == sorted(r["frame"] for r in records)
        assert frame_count(tmp_path / "out" / f"{name}.mp4") == len(records)


def test_several_cameras_publish_their_events_and_each_its_own_availability(model, mnist_digits, tmp_path):
    """Two cameras to one broker: each camera's events carry its name, and each has its own retained
    availability topic, so the camera that ends first does not mark the other offline."""
    from brokers import Broker, Subscriber

    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    crossing_digits_video(short, mnist_digits, frames=60)
    crossing_digits_video(long, mnist_digits, frames=160)
    broker = Broker(tmp_path)
    broker.start()
    subscriber = Subscriber(broker)
    try:
        configs = camera_configs(AppConfig(source=[str(short), str(long)], mqtt=broker.url, realtime=True))
        app = MultiCameraApp(model, configs)
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()))
        thread.start()
        assert subscriber.wait_for(lambda s: s.on("spamcam/short/available")[-1:] == ["offline"], timeout=30)
        assert thread.is_alive()  # the short camera's connection closed when it ended, not with the app
        assert subscriber.on("spamcam/long/available")[-1:] == ["online"]  # still running
        thread.join(timeout=60)
        assert subscriber.wait_for(lambda s: s.on("spamcam/long/available")[-1:] == ["offline"])
        cameras = {e["camera"] for e in subscriber.events()}
        assert cameras == {"short", "long"}
        assert subscriber.on("spamcam/available") == []
    finally:
        subscriber.close()
        broker.stop()


def test_a_stream_that_never_answers_does_not_hold_the_other_cameras(model, videos, tmp_path, capsys):
    """One camera's stream is down at start-up and stays down: it is waited for on its own thread, the
    other cameras run from the start, and the run exits 3 (a source was lost) with that camera named."""
    port = free_port()  # nothing listens there
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(yaml.safe_dump({"cameras": [
        {"name": "door", "source": str(videos[0])},
        {"name": "dead", "source": f"http://127.0.0.1:{port}/stream.mjpg", "reconnect_timeout": 3}]}))
    started = time.monotonic()
    code = edge_cli(["--model", str(model), "--cameras", str(cameras), "--json", str(tmp_path / "{camera}.jsonl")])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])["summary"]
    assert code == 3
    assert summary["cameras"]["door"]["frames"] == frame_count(videos[0])
    assert summary["cameras"]["dead"]["frames"] == 0 and summary["cameras"]["dead"]["stopped_by"] == "source lost"
    assert "[dead]" in captured.err and "the other cameras go on" in captured.err
    assert time.monotonic() - started < 60
