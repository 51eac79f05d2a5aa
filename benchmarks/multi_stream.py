"""Many cameras on this CPU: N generated 640x480 streams at their source rate (30 FPS each), JSON lines
per camera, three ways, in the same run:

- sequential loop: one thread visits the cameras in turn (newest frame, Localizer, JSON line) — what
  the single-camera loop becomes when it is given several sources;
- one process per camera: N `edge_app --realtime` processes side by side;
- batched + pipelined: `edge_app --cameras` (edge_app/multi.py): readers, one inference call for
  frames of several cameras, per-camera post-processing/output threads.

Each twice: at the source rate (files played at 30 FPS, as cameras deliver: the sources offer N x 30
and what is not processed in time is dropped), and unthrottled (files read as fast as each setup
can: its capacity). Aggregate processed FPS, frames dropped, and latency from a frame's arrival to
its JSON line (p50 / p99; at the source rate only). Models have random weights (speed only), ONNX Runtime FP32.

    python benchmarks/multi_stream.py [--streams 4,8] [--seconds 15] [--models lenet@128,mobilenet_v3_large@320]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edge_app.app  # noqa: E402,F401  the package, imported before this folder (with edge_app.py) is back
sys.path.append(str(Path(__file__).resolve().parent))  # for _speed
ROOT = Path(__file__).resolve().parents[1]

from _speed import make_video, random_onnx  # noqa: E402
FPS = 30


def make_streams(work: Path, count: int, seconds: float) -> list[Path]:
    """`count` copies of the generated 640x480 footage, each a file of its own (its own decoder)."""
    base = work / "stream.mp4"
    if not base.exists():
        make_video(base, int(seconds * FPS))
    paths = []
    for i in range(count):
        path = work / f"cam{i}.mp4"
        if not path.exists():
            path.write_bytes(base.read_bytes())
        paths.append(path)
    return paths


def sequential(model: Path, videos: list[Path], work: Path, realtime: bool) -> dict:
    """The baseline: one thread, cameras in turn, each newest frame through the Localizer to its JSON line."""
    from edge_app.app import AppConfig
    from edge_app.camera_outputs import CameraOutputs
    from edge_app.sources import open_source
    from runtime.localizer import Localizer

    localizer = Localizer(model)
    sources = [open_source(str(v), realtime=realtime) for v in videos]
    outputs = [CameraOutputs(AppConfig(source=str(v), camera=f"cam{i}", json=str(work / f"seq{i}.jsonl"), track=False),
                             localizer, fps=FPS, log=lambda _m: None) for i, v in enumerate(videos)]
    latencies, frames = [], 0
    started = time.perf_counter()
    try:
        ended = [False] * len(sources)
        while not all(ended):
            idle = True
            for k, (source, output) in enumerate(zip(sources, outputs)):
                frame = None if ended[k] else source.read(0)
                if frame is None:
                    ended[k] = ended[k] or not source.live or source.finished
                    continue
                idle = False
                output.deliver(frame, localizer(frame.image))
                if realtime:  # a file's timestamp is media time: latency only for live-like sources
                    latencies.append((time.time() - frame.timestamp) * 1000)
                frames += 1
            if idle:
                time.sleep(0.001)
    finally:
        seconds = time.perf_counter() - started
        for output in outputs:
            output.close()
        dropped = sum(s.stats.dropped for s in sources)
        for source in sources:
            source.close()
    return {"fps": frames / seconds, "frames": frames, "dropped": dropped,
            "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if latencies else float("nan")}


def per_process(model: Path, videos: list[Path], work: Path, realtime: bool) -> dict:
    """N edge_app processes, one per camera, started together."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-m", "edge_app", "--model", str(model), "--source", str(v),
                                   *(["--realtime"] if realtime else []), "--no-track", "--json", str(work / f"proc{i}.jsonl")],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for i, v in enumerate(videos)]
    summaries = [json.loads(p.communicate(timeout=600)[0].splitlines()[-1])["summary"] for p in processes]
    seconds = max(s["seconds"] for s in summaries)
    frames = sum(s["frames"] for s in summaries)
    return {"fps": frames / seconds, "frames": frames, "dropped": sum(s["dropped"] for s in summaries),
            "p50": float("nan"), "p99": float("nan")}


def batched(model: Path, videos: list[Path], work: Path, realtime: bool, max_batch: int) -> dict:
    from edge_app.app import AppConfig
    from edge_app.multi import BatchSettings, MultiCameraApp

    configs = [AppConfig(source=str(v), camera=f"cam{i}", json=str(work / f"multi{i}.jsonl"), realtime=realtime,
                         track=False)
               for i, v in enumerate(videos)]
    summary = MultiCameraApp(model, configs, batch=BatchSettings(max_batch=max_batch), log=lambda _m: None).run()
    # Files (not realtime) queue every frame from the start: latency means nothing there.
    p50 = float(np.median([v["p50"] for v in summary.latency_ms.values()])) if realtime else float("nan")
    p99 = float(max(v["p99"] for v in summary.latency_ms.values())) if realtime else float("nan")
    dropped = sum(sum(d.values()) for d in summary.dropped.values())
    return {"fps": summary.fps, "frames": summary.frames, "dropped": dropped, "p50": p50, "p99": p99,
            "mean_batch": summary.batched_frames / max(1, summary.batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="4,8")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each generated stream")
    parser.add_argument("--models", default="lenet@128,mobilenet_v3_large@320")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec_text in args.models.split(","):
            backbone, size = spec_text.split("@")
            model = random_onnx(work, backbone, int(size))
            for count in (int(n) for n in args.streams.split(",")):
                videos = make_streams(work, count, args.seconds)
                for realtime in (True, False):
                    results = {"sequential loop": sequential(model, videos, work, realtime),
                               "one process per camera": per_process(model, videos, work, realtime),
                               "batched + pipelined": batched(model, videos, work, realtime, max_batch=count)}
                    base = results["sequential loop"]["fps"]
                    rate = f"{FPS} FPS" if realtime else "unthrottled"
                    for name, r in results.items():
                        rows.append((f"{backbone}@{size}", count, rate, name, r, r["fps"] / base))
                        print(f"multi_stream: {backbone}@{size} x{count} {rate} {name}: {r['fps']:.1f} FPS "
                              f"({r['fps'] / base:.2f}x)", flush=True)
    print(f"\nmachine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; {args.streams} streams of "
          f"640x480 at {FPS} FPS, {args.seconds:g} s each; ONNX Runtime CPU FP32; {(time.time() - started) / 60:.1f} min")
    print("| model | streams | sources | setup | processed FPS (all cameras) | vs sequential | frames dropped | "
          "latency p50 ms | latency p99 ms | mean batch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, count, rate, name, r, ratio in rows:
        latency = ("-", "-") if np.isnan(r["p50"]) else (f"{r['p50']:.1f}", f"{r['p99']:.1f}")
        print(f"| {model} | {count} | {rate} | {name} | {r['fps']:.1f} | {ratio:.2f} | {r['dropped']} | {latency[0]} | "
              f"{latency[1]} | {r.get('mean_batch', 1.0):.2f} |")


if __name__ == "__main__":
    main()
