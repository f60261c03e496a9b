"""Results out: per-cell metrics, a terminal table, the JSON file, LATEST.md and the chart."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bench._stats import metrics_from_timings, summarize

# (workload, metric key, column title, higher is better)
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "chain10": [
        ("runs_per_s", "runs/s"),
        ("units_per_s", "steps/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
    ],
    "fanout100": [("units_per_s", "tasks/s"), ("p50_ms", "run p50 ms"), ("p99_ms", "run p99 ms")],
    "latency": [("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")],
    "backlog": [("elapsed_s", "drain s"), ("runs_per_s", "runs/s"), ("peak_rss_mb", "peak RSS MB")],
}


def cell_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of one repeat from its raw timings (and RSS)."""
    timings = result["timings"]
    metrics = metrics_from_timings(timings["starts"], timings["finishes"], timings["units_per_run"])
    metrics["failed"] = float(timings.get("failed", 0))
    if timings.get("submit_s") is not None:
        metrics["submit_s"] = float(timings["submit_s"])
    engine_rss = [v for k, v in result.get("rss_mb", {}).items() if k != "client"]
    metrics["peak_rss_mb"] = max(engine_rss) if engine_rss else math.nan
    return metrics


def summarize_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread of every metric over the repeats that succeeded."""
    ok = [r["metrics"] for r in repeats if r.get("status") == "ok"]
    keys = sorted({k for m in ok for k in m})
    return {k: summarize([m[k] for m in ok if k in m]) for k in keys}


def _fmt(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("median") is None:
        return "-"
    median = stat["median"]
    text = (
        f"{median:,.0f}"
        if abs(median) >= 100
        else f"{median:,.1f}"
        if abs(median) >= 10
        else f"{median:.2f}"
    )
    if stat.get("n", 0) > 1 and stat.get("spread_pct") is not None:
        text += f" ±{stat['spread_pct'] / 2:.0f}%"
    return text


def _status_text(cell: dict[str, Any]) -> str | None:
    if cell.get("summary") and any(r.get("status") == "ok" for r in cell["repeats"]):
        return None
    reasons = [r.get("reason", "") for r in cell["repeats"] if r.get("status") != "ok"]
    status = cell["repeats"][0].get("status", "error") if cell["repeats"] else "skipped"
    first = (reasons[0] if reasons else "").strip().splitlines()
    return f"{status}: {first[0][:90] if first else ''}"


def tables(results: dict[str, Any], markdown: bool = False) -> str:
    """One table per workload; rows are engine/config; cells 'median ±half-spread%'."""
    out: list[str] = []
    for workload, columns in COLUMNS.items():
        cells = [c for c in results["cells"] if c["workload"] == workload]
        if not cells:
            continue
        titles = ["engine", "config", *[t for _, t in columns], "failed"]
        rows: list[list[str]] = []
        for cell in cells:
            problem = _status_text(cell)
            head = [cell["engine"], cell["config"]]
            if problem:
                rows.append([*head, problem, *[""] * len(columns)])
                continue
            summary = cell["summary"]
            failed = summary.get("failed", {}).get("max")
            rows.append(
                [
                    *head,
                    *[_fmt(summary.get(k)) for k, _ in columns],
                    f"{failed:.0f}" if failed is not None else "-",
                ]
            )
        size = cells[0]["n"]
        out.append(
            f"{'### ' if markdown else ''}{workload} (n={size}, median ±half of min-max"
            f" spread over repeats)"
        )
        out.append(_render(titles, rows, markdown))
        out.append("")
    out.append(baseline_text(results, markdown))
    return "\n".join(out)


def _render(titles: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
        lines += ["| " + " | ".join(r[: len(titles)]) + " |" for r in rows]
        return "\n".join(lines)
    widths = [
        max(len(str(r[i])) for r in [titles, *rows] if i < len(r)) for i in range(len(titles))
    ]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(lines)


def baseline_text(results: dict[str, Any], markdown: bool = False) -> str:
    """Machine limits and Treadle's chain10 steps/s as a fraction of each."""
    base = results.get("baselines", {})
    lines = [f"{'### ' if markdown else ''}machine limits"]
    bullet = "- " if markdown else "  "
    for key, title in (
        ("pgbench_tps", "pgbench simple-update TPS (8 clients)"),
        ("rabbitmq_msgs_per_s", "RabbitMQ persistent publish+consume msgs/s"),
    ):
        stat = base.get(key)
        if stat is None:
            continue
        lines.append(f"{bullet}{title}: {_fmt(stat) if isinstance(stat, dict) else stat}")
    for cell in results["cells"]:
        if cell["engine"] != "treadle" or cell["workload"] != "chain10":
            continue
        steps = (cell.get("summary") or {}).get("units_per_s", {}).get("median")
        if steps is None:
            continue
        parts = []
        for key, label in (("pgbench_tps", "pgbench TPS"), ("rabbitmq_msgs_per_s", "RabbitMQ")):
            stat = base.get(key)
            if isinstance(stat, dict) and stat.get("median"):
                parts.append(f"{steps / stat['median']:.1%} of {label}")
        lines.append(
            f"{bullet}treadle {cell['config']} chain10 steps/s {steps:,.0f} = " + ", ".join(parts)
        )
    return "\n".join(lines)


def _label(cell: dict[str, Any]) -> str:
    return cell["engine"] if cell["engine"] != "treadle" else f"treadle\n{cell['config']}"


def chart(results: dict[str, Any], path: str) -> None:
    """Bars with min-max error bars: throughput (chain10 steps/s, fanout100 tasks/s),
    latency p50 and p99, and backlog drain time, per configuration and peer."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [
        ("chain10", "units_per_s", "chain10 steps/s (higher is better)"),
        ("fanout100", "units_per_s", "fanout100 tasks/s (higher is better)"),
        ("latency", "p50_ms", "one-step latency p50 ms (lower is better)"),
        ("latency", "p99_ms", "one-step latency p99 ms (lower is better)"),
        ("backlog", "elapsed_s", "backlog drain s (lower is better)"),
        ("backlog", "peak_rss_mb", "backlog peak RSS MB, largest process"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)))
    for ax, (workload, key, title) in zip(axes, panels, strict=True):
        labels, values, low, high = [], [], [], []
        for cell in results["cells"]:
            stat = (cell.get("summary") or {}).get(key)
            if cell["workload"] != workload or not stat or stat.get("median") is None:
                continue
            labels.append(_label(cell))
            values.append(stat["median"])
            low.append(stat["median"] - stat["min"])
            high.append(stat["max"] - stat["median"])
        ax.set_title(title, fontsize=10)
        if not values:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
            continue
        colors = ["tab:blue" if lbl.startswith("treadle") else "tab:gray" for lbl in labels]
        ax.bar(range(len(values)), values, yerr=[low, high], color=colors, capsize=3)
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        for x, v in enumerate(values):
            ax.annotate(
                f"{v:,.0f}" if v >= 10 else f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=7
            )
    meta = results["meta"]
    fig.suptitle(
        f"Treadle bench {meta['date'][:10]} commit {meta['commit'][:10]} "
        f"({meta['machine']['nproc']} cores, scale {meta['scale']})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def latest_md(results: dict[str, Any], chart_name: str) -> str:
    """The committed LATEST.md: when, where, how, the tables and the chart."""
    meta = results["meta"]
    machine = meta["machine"]
    notes: Iterable[str] = meta.get("notes", [])
    return "\n".join(
        [
            "# Latest benchmark",
            "",
            f"- date: {meta['date']}",
            f"- commit: `{meta['commit']}`"
            + (
                f" (Treadle measured at `{meta['treadle_commit']}`)"
                if meta.get("treadle_commit")
                else ""
            ),
            f"- machine: {machine['cpu']}, {machine['nproc']} cores, "
            f"{machine['memory_gib']:.0f} GiB, {machine['os']}",
            f"- command: `{meta['command']}`",
            f"- sizes: scale {meta['scale']}, {meta['repeat']} repeats per cell",
            *[f"- {note}" for note in notes],
            "",
            f"![throughput and latency]({chart_name})",
            "",
            tables(results, markdown=True),
            "",
        ]
    )
