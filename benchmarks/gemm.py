"""This machine's float32 matrix-multiply (GEMM) throughput: the reading that comes with every time
the project reports (scripts/build_course.py's summary.json, the benchmark), so that a time
measured on one machine can be scaled to another."""
from __future__ import annotations

import math
import time

import torch

__all__ = ["gemm_gflops", "synchronize"]


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to wait for on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(n: int = 2048, repeats: int = 5, device="cpu") -> float:
    """Best-of-``repeats`` float32 ``torch.mm`` throughput of ``n x n`` matrices, GFLOP/s
    (2 n^3 floating-point operations per product), with torch's current number of threads."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    torch.mm(a, b)  # warm-up (thread pool, caches)
    synchronize(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
