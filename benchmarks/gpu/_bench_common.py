"""Helpers the GPU benchmark scripts share (imported by name: each script's folder is on sys.path)."""

from __future__ import annotations

import time


def cpu_bench(fn, warmup=1, rep=None, grad_to_none=None):
    """One timed call in ms: the stand-in for triton.testing.do_bench when the script runs on CPU (--smoke)."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def rel_err(got, ref):
    """‖got − ref‖ / ‖ref‖ in float64."""
    got, ref = got.double(), ref.double()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()
