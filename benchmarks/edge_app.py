"""End-to-end edge_app speed on this CPU: a 640x480 video through the whole loop (decode, pre-process,
inference, post-process, overlay + video encode), for LeNet@128 and MobileNetV3@320 models; then what
tracking, events and clips cost, and whether memory stays flat over a long run.

    python benchmarks/edge_app.py [--frames 300] [--long-frames 10000]

The first table's models have random weights (speed only) and run through ONNX Runtime FP32, and
INT8 for LeNet. The events table uses a LeNet trained for a minute on the embedded digits, so that
the video's drawn 3s really come and go as tracks and events: boxes only (--no-track) against
tracking, and against tracking + events (event log, snapshots, H.264 clips, and MQTT to a local
mosquitto where one is installed), all in the same run. The memory row runs a live MJPEG feed of the
video for --long-frames frames with everything on and samples the process's resident memory.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# edge_app package it measures.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edge_app.app  # noqa: E402,F401  the package, imported before this folder (with edge_app.py) is back
sys.path.append(str(Path(__file__).resolve().parent))  # for _speed

from _speed import make_video, random_onnx  # noqa: E402


def make_event_video(path: Path, frames: int, fps: int = 30, h264: bool = False) -> None:
    """640x480: embedded-style 3s (OpenCV font digits, as the events model was trained on), scaled to
    140 px, crossing the frame one after another (a new one every 2 s, each in view ~4 s), and a 7.
    MPEG-4 Part 2 through OpenCV, or with `h264` as a camera records: H.264 through PyAV, x264's
    default preset (B-frames), a keyframe every 2 s."""
    from training.data.synthetic import synthetic_digits

    digits, labels = synthetic_digits(200, seed=5)
    threes = [cv2.resize((d * 255).astype(np.uint8), (140, 140)) for d in digits[labels == 3][:8]]
    seven = cv2.resize((digits[labels == 7][0] * 255).astype(np.uint8), (140, 140))
    rng = np.random.default_rng(0)
    writer = _H264Writer(path, fps) if h264 else cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                                 (640, 480))
    for t in range(frames):
        canvas = np.zeros((480, 640), np.uint8)
        canvas[330:470, 20:160] = np.maximum(canvas[330:470, 20:160], seven)
        for k in range(t // (2 * fps) - 2, t // (2 * fps) + 1):
            if k < 0:
                continue
            x = int(-140 + (t - k * 2 * fps) * 780 / (4 * fps))
            y = 30 + (k % 2) * 150
            x0, x1 = max(0, x), min(640, x + 140)
            if x1 > x0:
                glyph = threes[k % len(threes)][:, x0 - x : x1 - x]
                canvas[y : y + 140, x0:x1] = np.maximum(canvas[y : y + 140, x0:x1], glyph)
        writer.write(cv2.cvtColor(cv2.add(canvas, rng.integers(0, 8, canvas.shape, dtype=np.uint8)), cv2.COLOR_GRAY2BGR))
    writer.release()


class _H264Writer:
    """cv2.VideoWriter's write/release over PyAV's libx264."""

    def __init__(self, path: Path, fps: int) -> None:
        import av

        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = 640, 480, "yuv420p"
        self.stream.codec_context.gop_size = 2 * fps

    def write(self, image: np.ndarray) -> None:
        import av

        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))

    def release(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def trained_lenet(work: Path) -> Path:
    from export.onnx_export import export_onnx
    from training.train import TrainConfig, train

    record = train(TrainConfig(dataset="embedded", epochs=2, limits={"train": 3000, "val": 300}, out=str(work / "run"),
                               progress=False))
    return export_onnx(record["checkpoint"], work / "trained.onnx")


def start_broker(work: Path):
    """mosquitto on a free loopback port, or None where it is not installed."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        return None, None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([binary, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, f"mqtt://127.0.0.1:{port}"


def events_rows(videos: dict[str, Path], work: Path, repeats: int = 5) -> tuple[list, str]:
    """Boxes only vs tracking vs tracking + events + clips, for each source file, interleaved `repeats`
    times: median FPS, and median CPU time per frame (all threads: the sinks' and the clip encoder's
    too). Each file's rows are compared with boxes only on the same file."""
    from edge_app.app import AppConfig, EdgeApp

    model = trained_lenet(work)
    broker, url = start_broker(work)
    everything = dict(event_log=str(work / "events.jsonl"), snapshots=str(work / "snaps"), clips=str(work / "clips"),
                      clip_pre=2.0, clip_post=2.0, **({"mqtt": url} if url else {}))
    events_only = {k: v for k, v in everything.items() if not k.startswith("clip")}
    mqtt = " + MQTT" if url else ""
    setups = {}
    for label, video in videos.items():
        setups[(label, "boxes only (--no-track)")] = (video, dict(track=False))
        if label == next(iter(videos)):  # tracking does not depend on the file's codec
            setups[(label, "tracking")] = (video, {})
        setups[(label, "tracking + events + snapshots" + mqtt)] = (video, events_only)
        setups[(label, "tracking + events + snapshots + clips" + mqtt)] = (video, everything)
    fps = {key: [] for key in setups}
    cpu = {key: [] for key in setups}
    events, clips = {}, {}
    try:
        EdgeApp(model, AppConfig(source=str(next(iter(videos.values()))), max_frames=100), log=lambda _m: None).run()
        for _ in range(repeats):
            for key, (video, settings) in setups.items():
                before = time.process_time()
                summary = EdgeApp(model, AppConfig(source=str(video), **settings), log=lambda _m: None).run()
                cpu[key].append((time.process_time() - before) * 1000 / max(1, summary.frames))
                fps[key].append(summary.fps)
                events[key] = summary.events.get("events", {})
                clips[key] = summary.events.get("clips", {}).get("video", "-")
    finally:
        if broker is not None:
            broker.terminate()
    rows = []
    for (label, name), values in fps.items():
        base, base_cpu = (float(np.median(d[(label, "boxes only (--no-track)")])) for d in (fps, cpu))
        rows.append((label, name, clips[(label, name)], float(np.median(values)), float(np.median(values)) / base,
                     float(np.median(cpu[(label, name)])), float(np.median(cpu[(label, name)])) / base_cpu,
                     events[(label, name)]))
    return rows, model


def live_rows(model: Path, video: Path, work: Path, seconds: float = 20.0, fps: float = 30.0) -> list:
    """A camera's view: a live MJPEG feed at `fps`; frames processed and CPU use (all threads of the
    process, the feed's own encoding included as in every setup) per setup."""
    import threading

    from edge_app.app import AppConfig, EdgeApp
    from edge_app.outputs import MjpegServer

    broker, url = start_broker(work)
    everything = dict(event_log=str(work / "live.jsonl"), snapshots=str(work / "live_snaps"),
                      clips=str(work / "live_clips"), **({"mqtt": url} if url else {}))
    setups = {"boxes only (--no-track)": dict(track=False), "tracking + events + snapshots + clips"
              + (" + MQTT" if url else ""): everything}
    rows = []
    try:
        for name, settings in setups.items():
            server, stop = MjpegServer("127.0.0.1", 0), threading.Event()

            def feed(server=server, stop=stop):  # bound now: the next setup's names must not revive it
                capture = cv2.VideoCapture(str(video))
                while not stop.is_set():
                    ok, frame = capture.read()
                    if not ok:
                        capture = cv2.VideoCapture(str(video))
                        continue
                    server.write(frame)
                    time.sleep(1 / fps)

            threading.Thread(target=feed, daemon=True).start()
            app = EdgeApp(model, AppConfig(source=f"http://127.0.0.1:{server.address[1]}/stream.mjpg", **settings),
                          log=lambda _m: None)
            threading.Timer(seconds, app.stop).start()
            wall, cpu = time.perf_counter(), time.process_time()
            summary = app.run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stop.set()
            server.close()
            rows.append((name, summary.frames / wall, summary.dropped, 100 * cpu / wall, summary.events.get("events", {})))
    finally:
        if broker is not None:
            broker.terminate()
    return rows


def spinning_rows(work: Path, video: Path, repeats: int = 3) -> list:
    """ONNX Runtime's worker threads spinning between runs or not: a file read as fast as the loop goes
    (FPS), and the same file played at 30 FPS like a camera (processed FPS, CPU % of one core, whole
    process). Interleaved `repeats` times; medians."""
    from edge_app.app import AppConfig, EdgeApp

    rows = []
    for name, size in (("lenet", 128), ("mobilenet_v3_large", 320)):
        model = random_onnx(work, name, size)
        EdgeApp(model, AppConfig(source=str(video), max_frames=100), log=lambda _m: None).run()  # warm-up
        measured = {(spin, live): [] for spin in (False, True) for live in (False, True)}
        for _ in range(repeats):
            for spin in (False, True):
                for live in (False, True):
                    app = EdgeApp(model, AppConfig(source=str(video), json=str(work / "spin.jsonl"), realtime=live,
                                                   track=False), log=lambda _m: None, spinning=spin)
                    wall, cpu = time.perf_counter(), time.process_time()
                    summary = app.run()
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    measured[(spin, live)].append((summary.frames / wall, summary.stage_ms["inference"],
                                                   100 * cpu / wall, summary.dropped))
        for (spin, live), values in measured.items():
            fps, inference, cpu_percent, dropped = (float(np.median([v[k] for v in values])) for k in range(4))
            rows.append((f"{name}@{size}", "file at 30 FPS (--realtime)" if live else "file, as fast as possible",
                         "on" if spin else "off", fps, inference, cpu_percent, dropped))
    return rows


def memory_row(model: Path, video: Path, work: Path, frames: int) -> tuple[int, float, float, float]:
    """Resident memory after the first 10% of `frames` and at the end, everything on, a live feed."""
    import threading

    from edge_app.app import AppConfig, EdgeApp
    from edge_app.outputs import MjpegServer

    server, stop = MjpegServer("127.0.0.1", 0), threading.Event()

    def feed():
        while not stop.is_set():
            capture = cv2.VideoCapture(str(video))
            while not stop.is_set():
                ok, frame = capture.read()
                if not ok:
                    break
                server.write(frame)
                time.sleep(0.004)

    threading.Thread(target=feed, daemon=True).start()
    broker, url = start_broker(work)
    samples = []
    app = EdgeApp(model, AppConfig(source=f"http://127.0.0.1:{server.address[1]}/stream.mjpg", max_frames=frames,
                                   event_log=str(work / "long.jsonl"), snapshots=str(work / "long_snaps"),
                                   clips=str(work / "long_clips"), retain_count=20, **({"mqtt": url} if url else {})),
                  log=lambda _m: None)
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            samples.append(rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    try:
        summary = app.run()
    finally:
        done.set()
        stop.set()
        server.close()
        if broker is not None:
            broker.terminate()
    early = samples[max(0, len(samples) // 10)] if samples else float("nan")
    return summary.frames, early, samples[-1] if samples else float("nan"), max(samples, default=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--event-frames", type=int, default=2400, help="frames of the events video")
    parser.add_argument("--long-frames", type=int, default=10000, help="frames of the memory run (0: skip it)")
    parser.add_argument("--tables", default="loop,spinning,events",
                        help="which tables: loop (the whole loop per model), spinning (ONNX Runtime's worker threads "
                        "spinning between runs or not), events (tracking, events, clips; memory; live feed)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each events setup (medians)")
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure a 30 FPS live feed, 20 s per setup")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    import torch

    from calibration.quantize import quantize_int8
    from edge_app.app import STAGES, AppConfig, EdgeApp
    from edge_app.multi import MultiCameraApp

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "input.mp4"
        make_video(video, args.frames)
        spinning = spinning_rows(work, video) if "spinning" in tables else []
        for name, size, int8 in () if "loop" not in tables else (("lenet", 128, False), ("lenet", 128, True),
                                                                 ("mobilenet_v3_large", 320, False)):
            onnx_path = random_onnx(work, name, size)
            if int8:
                onnx_path = quantize_int8(onnx_path, work / f"{name}.int8.onnx", calibration="embedded", samples=32,
                                          show_progress=False)
            # Warm-up: the first frames of a process pay OpenCV's and ONNX Runtime's one-time set-up.
            EdgeApp(onnx_path, AppConfig(source=str(video), max_frames=150), log=lambda _m: None).run()
            for with_output in (False, True):
                outputs = [str(work / "out.mp4")] if with_output else []
                app = EdgeApp(onnx_path, AppConfig(source=str(video), outputs=outputs, json=str(work / "out.jsonl")),
                              log=lambda _m: None)
                summary = app.run()
                label = f"{name}@{size} {'INT8' if int8 else 'FP32'}"
                what = "JSON lines + overlay + mp4" if with_output else "JSON lines"
                rows.append((label, what, summary.fps, *(summary.stage_ms[s] for s in STAGES)))
                # The same camera through the pipelined app (edge_app --web, or several cameras).
                piped = MultiCameraApp(onnx_path, [AppConfig(source=str(video), outputs=outputs,
                                                             json=str(work / "out.jsonl"))], log=lambda _m: None).run()
                stages = piped.cameras["camera"].stage_ms
                rows.append((label, what + ", pipelined", piped.fps, *(stages[s] for s in STAGES)))
        event_table, memory, live = [], None, []
        if "events" in tables:
            event_video, camera_video = work / "events.mp4", work / "events-h264.mp4"
            make_event_video(event_video, args.event_frames)
            make_event_video(camera_video, args.event_frames, h264=True)
            event_table, model = events_rows({"MPEG-4 Part 2": event_video, "H.264 (as cameras record)": camera_video},
                                             work, args.repeats)
            memory = memory_row(model, event_video, work, args.long_frames) if args.long_frames else None
            live = live_rows(model, event_video, work) if args.live else []
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads; 640x480 video, {args.frames} frames; "
          "ONNX Runtime CPU")
    if rows:
        print("| model | outputs | FPS | capture ms | preprocess ms | inference ms | postprocess ms | output ms |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | " + " | ".join(f"{v:.2f}" for v in r[3:]) + " |")
    if spinning:
        print("\nONNX Runtime's worker threads spinning between runs or not; default threads; JSON lines, no video "
              "output; median of 3 interleaved runs")
        print("| model | source | spinning | processed FPS | inference ms | CPU % of one core | dropped |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in spinning:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.2f} | {r[5]:.0f} | {r[6]:.0f} |")
    if not event_table:
        return
    print("\nLeNet@128 FP32 trained on the embedded digits, 640x480 video of passing 3s, no video output; "
          f"median of {args.repeats} interleaved runs")
    print("| source file | setup | clips' video | FPS | FPS vs boxes only | CPU ms / frame | CPU vs boxes only | events |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, name, clip_video, fps, ratio, cpu_ms, cpu_ratio, events in event_table:
        print(f"| {label} | {name} | {clip_video} | {fps:.1f} | {ratio:.2f} | {cpu_ms:.2f} | {cpu_ratio:.2f} | "
              f"{events or '-'} |")
    if live:
        print("\nlive MJPEG feed at 30 FPS, 20 s per setup: what a camera sees")
        print("| setup | processed FPS | frames dropped | CPU % of one core (whole process) | events |")
        print("| --- | --- | --- | --- | --- |")
        for name, rate, dropped, cpu_percent, events in live:
            print(f"| {name} | {rate:.1f} | {dropped} | {cpu_percent:.0f} | {events or '-'} |")
    if memory:
        frames, early, last, peak = memory
        print(f"\nmemory, everything on, live MJPEG feed: {frames} frames; resident {early:.0f} MB after the first "
              f"10% of the run, {last:.0f} MB at the end (peak {peak:.0f} MB)")


if __name__ == "__main__":
    main()
