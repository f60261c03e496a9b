"""The benchmark harness's statistics and tables (the benchmarks themselves are never tests)."""

from __future__ import annotations

import math

import pytest

from bench import report
from bench._stats import metrics_from_timings, percentile, summarize


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles interpolate linearly between the sorted values, and are NaN for none."""
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_summarize_reports_median_and_relative_spread() -> None:
    """A summary is the median, min, max and (max-min)/median in percent, ignoring NaN."""
    stat = summarize([10.0, 12.0, 8.0, math.nan])
    assert stat == {"median": 10.0, "min": 8.0, "max": 12.0, "spread_pct": 40.0, "n": 3}
    assert summarize([])["median"] is None


def test_metrics_count_from_first_start_to_last_durable_finish() -> None:
    """Throughput spans the first start call to the last completion; latency is per run."""
    metrics = metrics_from_timings([0.0, 1.0], [2.0, 5.0], units_per_run=10)
    assert metrics["elapsed_s"] == 5.0
    assert metrics["runs_per_s"] == pytest.approx(0.4)
    assert metrics["units_per_s"] == pytest.approx(4.0)
    assert metrics["p50_ms"] == pytest.approx(3000.0)


def test_metrics_need_one_finish_per_start() -> None:
    """Mismatched timing lists are refused rather than silently truncated."""
    with pytest.raises(ValueError, match="one finish time per start"):
        metrics_from_timings([0.0, 1.0], [2.0], units_per_run=1)


def test_tables_show_medians_and_unavailable_reasons() -> None:
    """The terminal table shows a cell's median with its spread, or why the cell did not run."""
    ok = {
        "status": "ok",
        "timings": {"starts": [0.0], "finishes": [0.5], "units_per_run": 1},
        "rss_mb": {"engine": 50.0, "client": 20.0},
    }
    ok["metrics"] = report.cell_metrics(ok)
    results = {
        "meta": {},
        "baselines": {"pgbench_tps": summarize([1000.0, 1100.0, 900.0])},
        "cells": [
            {
                "engine": "treadle",
                "config": "embedded",
                "workload": "latency",
                "n": 1,
                "repeats": [ok],
                "summary": report.summarize_repeats([ok]),
            },
            {
                "engine": "restate",
                "config": "single-node",
                "workload": "latency",
                "n": 1,
                "repeats": [{"status": "unavailable", "reason": "npm blocked"}],
                "summary": {},
            },
        ],
    }
    text = report.tables(results)
    assert "500" in text
    assert "unavailable: npm blocked" in text
    assert "1,000 ±10%" in text
    assert ok["metrics"]["peak_rss_mb"] == 50.0
