"""Latency as build-engine measures it to choose between FP32 and INT8 (benchmarks/cpu_int8.py too)."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["median_ms"]


def median_ms(backend, batch: np.ndarray, seconds: float = 1.5, runs: int = 50) -> float:
    """Median latency of `backend.infer(batch)` in ms: a warm-up call, then at least 5 and at most
    `runs` timed calls within about `seconds` (benchmarks/cpu_int8.py uses it too)."""
    backend.infer(batch)  # warm-up: allocation, kernel selection
    times, start = [], time.perf_counter()
    while len(times) < 5 or (len(times) < runs and time.perf_counter() - start < seconds):
        begin = time.perf_counter()
        backend.infer(batch)
        times.append((time.perf_counter() - begin) * 1000)
    return float(np.median(times))
