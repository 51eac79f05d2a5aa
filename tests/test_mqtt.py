"""Events over MQTT through a real broker (Debian's mosquitto on loopback) and a real paho subscriber:
the exact event sequence and counts for a generated video, the retained availability and its last
will after SIGKILL, and a broker that is down when edge_app starts and comes up later."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest

from brokers import Broker, Subscriber, mosquitto_binary
from edge_app.app import AppConfig, EdgeApp
from edge_app.outputs import MjpegServer
from media import crossing_digits_video

pytest.importorskip("paho.mqtt", reason="paho-mqtt is not installed (pip install 'spamcam[mqtt]')")


@pytest.fixture(scope="module")
def crossing(mnist_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("crossing_mqtt") / "cross.mp4"
    crossing_digits_video(path, mnist_digits)
    return path


@pytest.fixture
def broker(tmp_path):
    mosquitto_binary()
    server = Broker(tmp_path).start()
    yield server
    server.stop()


def loop_video(path, server: MjpegServer, stop: threading.Event, fps: float = 40.0) -> None:
    """Stream a video file as a live MJPEG camera, over and over, at about `fps`."""
    while not stop.is_set():
        capture = cv2.VideoCapture(str(path))
        while not stop.is_set():
            ok, frame = capture.read()
            if not ok:
                break
            server.write(frame)
            time.sleep(1 / fps)
        capture.release()


def test_the_event_sequence_counts_and_availability(exported, crossing, broker):
    subscriber = Subscriber(broker)
    try:
        summary = EdgeApp(exported, AppConfig(source=str(crossing), mqtt=broker.url, camera="feeder"),
                          log=lambda m: None).run()
        assert subscriber.wait_for(lambda s: s.on("spamcam/available")[-1:] == ["offline"])
        events = subscriber.events()
        assert [(e["type"], e["track_id"]) for e in events] == [("new", 1), ("new", 2), ("end", 1), ("end", 2)]
        assert all(e["camera"] == "feeder" and e["label"] == "3" for e in events)
        assert subscriber.on("spamcam/feeder/3") == ["0", "1", "2", "1", "0"]  # how many 3s are in view
        assert subscriber.on("spamcam/available") == ["online", "offline"]
        assert summary.events["sinks"]["mqtt"]["sent"] == 4 + 5 and summary.events["sinks"]["mqtt"]["failed"] == 0
    finally:
        subscriber.close()
    late = Subscriber(broker)  # a consumer that connects later still learns the state: retained messages
    try:
        assert late.wait_for(lambda s: ("spamcam/available", "offline", True) in s.messages
                             and ("spamcam/feeder/3", "0", True) in s.messages, timeout=5)
    finally:
        late.close()


def test_events_over_tls_with_the_brokers_ca(exported, crossing, tmp_path):
    broker = Broker(tmp_path, tls=True).start()
    subscriber = Subscriber(broker)
    try:
        EdgeApp(exported, AppConfig(source=str(crossing), mqtt=broker.url, mqtt_ca=broker.ca_file),
                log=lambda m: None).run()
        assert subscriber.wait_for(lambda s: len(s.events()) == 4)
    finally:
        subscriber.close()
        broker.stop()
    (tmp_path / "other").mkdir()
    other = Broker(tmp_path / "other", tls=True).start()  # its own self-signed certificate
    logs = []
    try:  # the certificate of another CA: refused, said, not fatal
        summary = EdgeApp(exported, AppConfig(source=str(crossing), mqtt=other.url, mqtt_ca=broker.ca_file),
                          log=logs.append).run()
        assert summary.frames > 0 and summary.events["sinks"]["mqtt"]["sent"] == 0
        assert any("mqtt: cannot connect" in line for line in logs)
    finally:
        other.stop()


def test_the_last_will_says_offline_when_edge_app_is_killed(exported, crossing, broker, tmp_path):
    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()
    threading.Thread(target=loop_video, args=(crossing, server, stop), daemon=True).start()
    subscriber = Subscriber(broker)
    command = [sys.executable, "-m", "edge_app", "--model", str(exported), "--source",
               f"http://127.0.0.1:{server.address[1]}/stream.mjpg", "--mqtt", broker.url, "--headless"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert subscriber.wait_for(lambda s: "online" in s.on("spamcam/available") and s.events(), timeout=60), \
            "edge_app never came online with an event"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert subscriber.wait_for(lambda s: s.on("spamcam/available")[-1:] == ["offline"], timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        stop.set()
        server.close()
        subscriber.close()


def test_a_broker_that_is_down_at_start_up_is_waited_for_while_the_video_runs(exported, crossing, tmp_path):
    broker = Broker(tmp_path)  # configured, not started: nothing listens on its port yet
    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()
    threading.Thread(target=loop_video, args=(crossing, server, stop), daemon=True).start()
    logs = []
    app = EdgeApp(exported, AppConfig(source=f"http://127.0.0.1:{server.address[1]}/stream.mjpg", mqtt=broker.url),
                  log=logs.append)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=app.run()), daemon=True)
    thread.start()
    subscriber = None
    try:
        time.sleep(4)  # the app runs without its broker: frames go on, events wait in the queue
        broker.start()
        subscriber = Subscriber(broker)
        assert subscriber.wait_for(lambda s: len(s.events()) >= 2, timeout=40), logs[-5:]
        app.stop()
        thread.join(30)
        summary = result["summary"]
        assert summary.frames > 100  # the video kept running while the broker was away
        assert summary.events["sinks"]["mqtt"]["sent"] >= 2
        assert any("mqtt: connected" in line for line in logs)
    finally:
        app.stop()
        stop.set()
        server.close()
        if subscriber:
            subscriber.close()
        broker.stop()
