"""Through Triton Inference Server vs the local backend: 1, 4 and 8 concurrent clients, each sending
one 640x480 frame at a time through a Localizer (pre-processing, inference, post-processing), for
LeNet@128 and MobileNetV3@320 (random weights: speed only).

The server is tests/triton_server.py's: NVIDIA's tritonserver (nvidia-pytriton's binary) on loopback,
its Python backend running the model with ONNX Runtime (the only backend that binary has), dynamic
batching on. Local: one ONNX Runtime session shared by the client threads. On this CPU the server
and the clients share the same two cores, so the numbers say what the protocol and batching cost
or gain here, not what a GPU server would do.

    python benchmarks/triton_serving.py [--frames 200] [--clients 1,4,8]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edge_app.app  # noqa: E402,F401  the package, imported before this folder (with edge_app.py) is back
sys.path.append(str(Path(__file__).resolve().parent))  # for _speed
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/triton_server.py: the server the tests use

from _speed import make_video, random_onnx  # noqa: E402


def run_clients(make_localizer, frames: list[np.ndarray], clients: int, per_client: int) -> dict:
    """`clients` threads, each with its own Localizer (a Triton client each; locally one session
    shared), each processing `per_client` frames one at a time. Aggregate FPS and latency."""
    localizers = [make_localizer() for _ in range(clients)]
    latencies: list[float] = []
    lock = threading.Lock()

    def client(localizer) -> None:
        own = []
        for i in range(per_client):
            start = time.perf_counter()
            localizer(frames[i % len(frames)])
            own.append((time.perf_counter() - start) * 1000)
        with lock:
            latencies.extend(own)

    for localizer in localizers:  # warm-up
        localizer(frames[0])
    threads = [threading.Thread(target=client, args=(localizer,)) for localizer in localizers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for localizer in localizers:
        localizer.close()
    return {"fps": clients * per_client / seconds, "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="frames per client")
    parser.add_argument("--clients", default="1,4,8")
    args = parser.parse_args()
    import triton_server
    from runtime.localizer import Localizer

    reason = triton_server.missing_reason()
    if reason:
        raise SystemExit(f"triton benchmark: {reason}")
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_video(work / "video.mp4", 60)
        capture = cv2.VideoCapture(str(work / "video.mp4"))
        frames = [capture.read()[1] for _ in range(60)]
        repository = work / "models"
        models = {}
        for backbone, size in (("lenet", 128), ("mobilenet_v3_large", 320)):
            models[backbone] = random_onnx(work, backbone, size)
            triton_server.python_model(repository, backbone, models[backbone], max_batch=8, queue_delay_us=1000)
        with triton_server.Server(repository, work / "server.log") as server:
            for backbone, size in (("lenet", 128), ("mobilenet_v3_large", 320)):
                for clients in (int(c) for c in args.clients.split(",")):
                    shared = Localizer(models[backbone])  # one session, as edge_app's cameras share it
                    local = run_clients(lambda: shared, frames, clients, args.frames)
                    remote = run_clients(lambda: Localizer(f"triton://127.0.0.1:{server.grpc}/{backbone}"), frames,
                                         clients, args.frames)
                    rows.append((f"{backbone}@{size}", clients, local, remote))
                    print(f"triton: {backbone}@{size} x{clients}: local {local['fps']:.1f} FPS, "
                          f"Triton {remote['fps']:.1f} FPS", flush=True)
    print(f"\nmachine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores (server and clients on "
          f"the same cores); {args.frames} frames per client; {(time.time() - started) / 60:.1f} min")
    print("| model | clients | local FPS | local p50 / p99 ms | Triton (gRPC) FPS | Triton p50 / p99 ms | Triton / local |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model, clients, local, remote in rows:
        print(f"| {model} | {clients} | {local['fps']:.1f} | {local['p50']:.1f} / {local['p99']:.1f} | "
              f"{remote['fps']:.1f} | {remote['p50']:.1f} / {remote['p99']:.1f} | {remote['fps'] / local['fps']:.2f} |")


if __name__ == "__main__":
    main()
