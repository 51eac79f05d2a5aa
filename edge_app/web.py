"""edge_app's live web page: every camera's preview in a grid, its latest detections, FPS, per-stage
latency and drops; `/metrics` for Prometheus; `/api/state` as JSON.

Plain HTML and JavaScript in this file, no build step and nothing fetched from elsewhere (a site's
cameras often have no internet). Bound to 127.0.0.1 unless asked otherwise, as the MJPEG preview is:
a camera feed is never published by accident. Previews are JPEG-encoded at most `preview_fps` times a
second per camera, and only while somebody looks (a request in the last few seconds), so an open
port costs the frame loop nothing when nobody watches.

    /                  the page
    /api/state         JSON: model, batches, per camera frames, FPS, stage ms, latency p50/p99, drops,
                       latest detections
    /camera/<i>.jpg    camera i's latest annotated frame
    /metrics           Prometheus text format (prometheus-client)
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2

from .metrics import CONTENT_TYPE

__all__ = ["WebServer", "parse_web_address"]

PREVIEW_WIDTH = 640  # previews are scaled down to this width: a grid of 16 full-HD JPEGs is too much
_WATCHED_FOR = 5.0  # seconds after the last preview request during which previews are still encoded


def parse_web_address(uri: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """http://[HOST]:PORT or HOST:PORT or PORT -> (host, port)."""
    from runtime.errors import ConfigError

    rest = uri.split("://", 1)[1] if "://" in uri else uri
    host, _, port = rest.strip("/").rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--web {uri}: give http://HOST:PORT, e.g. http://127.0.0.1:8080") from None
    if not 0 <= number < 65536:
        raise ConfigError(f"--web {uri}: port {number} is out of range")
    return host or default_host, number


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spamcam</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1em; background: #111; color: #eee; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1em; }
.camera { background: #222; padding: .5em; border-radius: 6px; }
.camera img { width: 100%; background: #000; min-height: 120px; }
.camera h2 { font-size: 1.1em; margin: .2em 0; }
.stats { font-size: .8em; color: #aaa; }
.detections { font-size: .85em; margin: .3em 0 0 1.2em; padding: 0; }
.stopped { color: #f77; }
</style></head>
<body>
<h1>spamcam <span id="model" class="stats"></span></h1>
<div id="grid"></div>
<script>
"use strict";
const grid = document.getElementById("grid");
const tiles = [];
function tile(index, camera) {
  const div = document.createElement("div");
  div.className = "camera";
  div.dataset.name = camera.name;
  div.innerHTML = '<h2></h2><img alt=""><div class="stats"></div><ul class="detections"></ul>';
  div.querySelector("h2").textContent = camera.name;
  const img = div.querySelector("img");
  img.alt = camera.name;
  img.dataset.loads = "0";
  let frame = 0;
  const next = () => setTimeout(() => { img.src = "camera/" + index + ".jpg?n=" + (frame++); }, 150);
  img.onload = () => { img.dataset.loads = String(Number(img.dataset.loads) + 1); next(); };
  img.onerror = () => setTimeout(next, 500);
  next();
  grid.appendChild(div);
  return div;
}
function show(state) {
  document.getElementById("model").textContent = state.model + " on " + state.backend +
    ", " + state.batches + " inference calls, mean batch " + state.mean_batch;
  state.cameras.forEach((camera, index) => {
    const div = tiles[index] || (tiles[index] = tile(index, camera));
    const ms = camera.stage_ms;
    const stages = Object.keys(ms).map(k => k + " " + ms[k]).join(", ");
    const dropped = Object.values(camera.dropped).reduce((a, b) => a + b, 0);
    const stats = div.querySelector(".stats");
    stats.textContent = camera.fps + " FPS, " + camera.frames + " frames, dropped " + dropped +
      ", reconnects " + camera.reconnects + " | latency p50 " + camera.latency_ms.p50 + " ms, p99 " +
      camera.latency_ms.p99 + " ms | " + stages + (camera.reconnecting ? " | reconnecting" : "") +
      (camera.stopped_by ? " | stopped: " + camera.stopped_by : "");
    stats.classList.toggle("stopped", !camera.up);
    const list = div.querySelector(".detections");
    list.replaceChildren(...camera.detections.map(d => {
      const item = document.createElement("li");
      const conf = d.confidence === undefined ? "" : " " + d.confidence.toFixed(2);
      item.textContent = d["class"] + conf + " [" + d.box.map(v => Math.round(v)).join(", ") + "]";
      return item;
    }));
  });
}
async function poll() {
  try {
    const response = await fetch("api/state", {cache: "no-store"});
    if (response.ok) show(await response.json());
  } catch (error) { /* the app restarted or stopped: keep trying */ }
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


class WebServer:
    """Serves the page for a MultiCameraApp (its `state()`, `cameras`, `metrics`)."""

    def __init__(self, app: Any, address: str, *, preview_fps: float = 10.0, quality: int = 75) -> None:
        self.app = app
        self.preview_interval = 1.0 / preview_fps
        self.quality = quality
        self._watched_until = 0.0
        host, port = parse_web_address(address)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: a page polling twice a second is noise
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        self._send(200, "text/html; charset=utf-8", PAGE.encode())
                    elif path == "/api/state":
                        self._send(200, "application/json", json.dumps(server.app.state()).encode())
                    elif path == "/metrics":
                        if server.app.metrics.registry is None:
                            self._send(501, "text/plain", b"/metrics needs prometheus-client: "
                                       b"pip install prometheus-client (or spamcam[web])\n")
                        else:
                            self._send(200, CONTENT_TYPE, server.app.metrics.exposition())
                    elif path.startswith("/camera/") and path.endswith(".jpg"):
                        server._watched_until = time.monotonic() + _WATCHED_FOR
                        data = server.preview(path[len("/camera/"):-len(".jpg")])
                        if data is None:
                            self._send(503, "text/plain", b"no frame yet\n")
                        else:
                            self._send(200, "image/jpeg", data)
                    else:
                        self._send(404, "text/plain", b"not found\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            from runtime.errors import ConfigError

            raise ConfigError(f"--web {address}: cannot serve the page there ({error})") from error
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address
        self.url = f"http://{self.address[0]}:{self.address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)
        self._thread.start()

    def preview(self, key: str) -> bytes | None:
        try:
            camera = self.app.cameras[int(key)]
        except (ValueError, IndexError):
            return None
        return camera.preview

    def offer_preview(self, camera: Any, frame: Any, result: Any, annotated: Any, track_ids: Any = None) -> None:
        """Called by a camera's worker after each frame: encode a preview when one is due and watched."""
        now = time.monotonic()
        if camera.preview is not None and (now < camera._preview_at or now > self._watched_until):
            return
        camera._preview_at = now + self.preview_interval
        image = annotated if annotated is not None else camera.outputs.annotate(frame, result, "", track_ids)
        height, width = image.shape[:2]
        if width > PREVIEW_WIDTH:
            image = cv2.resize(image, (PREVIEW_WIDTH, round(height * PREVIEW_WIDTH / width)),
                               interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            camera.preview = data.tobytes()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
