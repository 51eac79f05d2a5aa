"""Real network peers for the event tests: Debian's mosquitto on a free loopback port, a paho
subscriber that records what it receives, and a webhook receiver (stdlib http.server) that can be
told to fail its first requests."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto; `make setup` does it as root)")
    return binary


class Broker:
    """mosquitto listening on 127.0.0.1:port; `start()` / `stop()` can be repeated (a broker that goes away)."""

    def __init__(self, folder: Path, port: int | None = None, tls: bool = False) -> None:
        self.binary, self.port = mosquitto_binary(), port or free_port()
        self.config = folder / "mosquitto.conf"
        # Run as root, mosquitto drops to the `mosquitto` user, which could not read the test's key file.
        user = ["user root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        lines = [*user, f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        self.ca_file = None
        if tls:  # a self-signed certificate for 127.0.0.1, made with openssl
            if shutil.which("openssl") is None:
                pytest.skip("openssl is not installed: no certificate for the TLS broker")
            cert, key = folder / "broker.crt", folder / "broker.key"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                            str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            lines += [f"certfile {cert}", f"keyfile {key}"]
            self.ca_file = str(cert)
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.ca_file else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


class Subscriber:
    """Records (topic, payload text, retained flag) for everything under `topic`."""

    def __init__(self, broker: Broker, topic: str = "spamcam/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        if broker.ca_file:
            self.client.tls_set(ca_certs=broker.ca_file)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def events(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/events")]

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, condition, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(0.05)
        return condition(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """An HTTP server recording each POSTed JSON body; answers 500 to the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        receiver = self
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail_first = fail_first

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.requests += 1
                if receiver.requests <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
