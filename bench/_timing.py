"""Timing helpers shared by the bench/ scripts (which print and never assert)."""

from __future__ import annotations

import statistics
import time


def per_call(fn, calls, repeats):
    """Median over ``repeats`` timings of ``calls`` back-to-back calls of fn(), in seconds per call."""
    means = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t0) / calls)
    return statistics.median(means)


def calibrated_per_call(fn, repeats, min_time=0.05):
    """per_call with the batch of calls doubled (after a warm-up call) until one timing lasts
    about ``min_time`` seconds."""
    fn()
    calls = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - t0 >= min_time or calls >= 1 << 20:
            break
        calls *= 2
    return per_call(fn, calls, repeats)
