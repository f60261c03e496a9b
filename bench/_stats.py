"""Statistics the harness reports: percentiles, median and spread over repeats."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread (min, max, and max-min relative to the median) of repeated values."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    median = statistics.median(clean)
    low, high = min(clean), max(clean)
    spread = (high - low) / median * 100.0 if median else 0.0
    return {"median": median, "min": low, "max": high, "spread_pct": spread, "n": len(clean)}


def metrics_from_timings(
    starts: Sequence[float], finishes: Sequence[float], units_per_run: int
) -> dict[str, float]:
    """Throughput and latency from per-run start (client clock) and finish (durable record) times.

    Throughput counts from the first start request to the last durable completion.
    """
    if not starts or len(starts) != len(finishes):
        raise ValueError("need one finish time per start time")
    latencies = [f - s for s, f in zip(starts, finishes, strict=True)]
    elapsed = max(finishes) - min(starts)
    runs = len(starts)
    return {
        "runs": float(runs),
        "elapsed_s": elapsed,
        "runs_per_s": runs / elapsed if elapsed > 0 else math.nan,
        "units_per_s": runs * units_per_run / elapsed if elapsed > 0 else math.nan,
        "p50_ms": percentile(latencies, 50) * 1000.0,
        "p99_ms": percentile(latencies, 99) * 1000.0,
    }
