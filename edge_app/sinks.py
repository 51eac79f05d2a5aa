"""Where events go — MQTT, webhooks, a local JSON-lines log — without ever holding up the camera.

Each sink is a worker thread behind a bounded queue: the frame loop only enqueues (`send`), and a
full queue drops its *oldest* message and counts it, so a broker or endpoint that is down, slow or
gone costs messages, never frames. Failures are counted and said once per kind in the log, never
fatal; `stats()` goes into the run summary.

MQTT (paho-mqtt, `pip install 'spamcam[mqtt]'`), topics as Frigate has them:
    <prefix>/available          "online" (retained) on connect; "offline" on close, and as the
                                last will when the app dies without closing (kill -9, power loss)
    <prefix>/events             each event as JSON (new / update / end)
    <prefix>/<camera>/<class>   how many objects of that class are tracked now (retained)
paho reconnects by itself, with back-off between `reconnect_min` and `reconnect_max` seconds, also
when the broker is down at start-up; messages wait in the queue meanwhile.

Webhooks: an HTTP POST of the event JSON to each URL, retried with back-off; 2xx is delivered.
"""
from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from runtime.errors import ConfigError

from .outputs import JsonLines, OutputError

__all__ = ["Sink", "MqttSink", "MqttSettings", "WebhookSink", "EventLogSink", "DEFAULT_QUEUE"]

DEFAULT_QUEUE = 1000  # messages a sink holds while its destination is away


class Sink:
    """A worker thread that delivers queued messages with `_deliver`; subclasses say how."""

    name = "sink"

    def __init__(self, *, capacity: int = DEFAULT_QUEUE, log: Callable[[str], None] | None = None) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self.log = log or (lambda message: None)
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None  # the latest failure, for the run summary
        self._said: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=f"spamcam-{self.name}", daemon=True)
        self._thread.start()

    def send(self, message: Any) -> None:
        """Enqueue; never blocks: when full, the oldest message goes (counted in `dropped`)."""
        while True:
            try:
                self._queue.put_nowait(message)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    with self._lock:
                        self.dropped += 1
                    self._say_once("queue full", f"edge_app: {self.name}: its queue is full; dropping the oldest "
                                   "messages (the destination is away or too slow)")
                except queue.Empty:
                    pass

    def send_event(self, event: dict) -> None:
        """An event, in the form this sink delivers (MQTT adds its topic)."""
        self.send(event)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout` seconds, then stop; what is left counts as dropped."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._lock:
            self.dropped += self._queue.qsize()
        self._closed()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "queued": self._queue.qsize()}

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                delivered = self._deliver(message)
            except Exception as error:  # a sink must never take the app down
                delivered = False
                self.last_error = str(error)
                self._say_once(type(error).__name__, f"edge_app: {self.name}: {error}")
            with self._lock:
                if delivered:
                    self.sent += 1
                else:
                    self.failed += 1

    def _deliver(self, message: Any) -> bool:
        raise NotImplementedError

    def _closed(self) -> None:
        """After the worker stopped: release the connection or file."""

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.log(message)


@dataclass
class MqttSettings:
    url: str  # mqtt://[user:password@]host[:port] or mqtts:// (TLS)
    prefix: str = "spamcam"
    client_id: str = ""
    qos: int = 1
    ca_file: str | None = None  # TLS: the broker's CA (default: the system's)
    cert_file: str | None = None  # TLS client certificate
    key_file: str | None = None
    insecure: bool = False  # TLS without checking the broker's certificate (testing only)
    keepalive: int = 30
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0
    available_topic: str = ""  # the retained online / offline topic (default: PREFIX/available)


class MqttSink(Sink):
    """Messages are (topic suffix, payload, retained); `send_event` and `publish_counts` make them."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, *, camera: str = "camera", capacity: int = DEFAULT_QUEUE,
                 log: Callable[[str], None] | None = None) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as error:
            raise ConfigError("--mqtt needs paho-mqtt: pip install 'spamcam[mqtt]'") from error
        url = urlparse(settings.url)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ConfigError(f"--mqtt takes mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {settings.url!r}")
        if settings.qos not in (0, 1, 2):
            raise ConfigError(f"--mqtt-qos is 0, 1 or 2, got {settings.qos}")
        self.settings, self.camera = settings, camera
        self.available_topic = settings.available_topic or f"{settings.prefix}/available"
        self._connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id or f"spamcam-{camera}",
                             protocol=mqtt.MQTTv311)
        client.will_set(self.available_topic, "offline", qos=1, retain=True)
        if url.username:
            client.username_pw_set(url.username, url.password)
        if url.scheme == "mqtts":
            client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file)
            client.tls_insecure_set(settings.insecure)
        client.reconnect_delay_set(min_delay=max(1, int(settings.reconnect_min)), max_delay=int(settings.reconnect_max))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda client, userdata: self._say_once(
            "connect fail", f"edge_app: mqtt: cannot connect to {settings.url} (down, or its TLS certificate is not "
            "trusted: --mqtt-ca); retrying with back-off, messages wait in the queue")
        self.client = client
        self.reconnects = -1  # the first connection is not a reconnection
        super().__init__(capacity=capacity, log=log)
        client.connect_async(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883),
                             keepalive=settings.keepalive)
        client.loop_start()  # paho's network thread: connects, and reconnects with back-off

    def send_event(self, event: dict) -> None:
        self.send(("events", json.dumps(event), False))

    def publish_counts(self, counts: dict[str, int]) -> None:
        for label, count in counts.items():
            self.send((f"{self.camera}/{label}", str(count), True))

    def stats(self) -> dict[str, int]:
        return super().stats() | {"reconnects": max(0, self.reconnects), "connected": int(self._connected.is_set())}

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002 — paho's signature
        if reason_code.is_failure:
            self._say_once(f"refused {reason_code}", f"edge_app: mqtt: the broker refused the connection: {reason_code}")
            return
        self.reconnects += 1
        client.publish(self.available_topic, "online", qos=1, retain=True)
        self._connected.set()
        self.log(f"edge_app: mqtt: connected to {self.settings.url}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002
        if self._connected.is_set():
            self.log(f"edge_app: mqtt: disconnected ({reason_code}); reconnecting, messages wait in the queue")
        self._connected.clear()

    def _deliver(self, message) -> bool:
        topic, payload, retain = message
        while not self._stop.is_set():
            if not self._connected.wait(0.2):
                continue  # the broker is away: hold the message (the queue bounds how many)
            info = self.client.publish(f"{self.settings.prefix}/{topic}", payload, qos=self.settings.qos, retain=retain)
            if self.settings.qos == 0:
                return info.rc == 0
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):  # disconnected while sending: paho resends it after reconnecting
                pass
            if info.is_published():
                return True
        return False

    def _closed(self) -> None:
        if self._connected.is_set():
            self.client.publish(self.available_topic, "offline", qos=1, retain=True).wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()


class WebhookSink(Sink):
    """POST each event's JSON to `url`; retried `retries` times with doubling back-off."""

    name = "webhook"

    def __init__(self, url: str, *, retries: int = 3, timeout: float = 5.0, backoff: float = 0.5,
                 capacity: int = DEFAULT_QUEUE, log: Callable[[str], None] | None = None) -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ConfigError(f"--webhook takes an http:// or https:// URL, got {url!r}")
        self.url, self.retries, self.timeout, self.backoff = url, retries, timeout, backoff
        self.name = f"webhook {url}"
        super().__init__(capacity=capacity, log=log)

    def _deliver(self, event: dict) -> bool:
        body = json.dumps(event).encode()
        delay = self.backoff
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json", "User-Agent": "spamcam"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
            except (urllib.error.URLError, OSError) as error:
                self.last_error = str(error)
                self._say_once(f"fail {type(error).__name__}", f"edge_app: {self.name}: {error} (retrying)")
            if attempt < self.retries and self._stop.wait(delay):
                break
            delay *= 2
        return False


class EventLogSink(Sink):
    """The events as JSON lines in a local file (written whole or not at all, like --json)."""

    name = "event log"

    def __init__(self, path: str | Path, *, capacity: int = DEFAULT_QUEUE, log: Callable[[str], None] | None = None) -> None:
        self.path = str(path)
        self._lines = JsonLines(self.path, option="--event-log")
        super().__init__(capacity=capacity, log=log)

    def _deliver(self, event: dict) -> bool:
        try:
            self._lines.write_record(event)
            return True
        except OutputError as error:
            self.last_error = str(error)
            self._say_once("write", f"edge_app: error: {error}")
            return False

    def _closed(self) -> None:
        self._lines.close()
