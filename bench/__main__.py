"""`python -m bench`: run the workloads on every engine and configuration.

Each (engine, configuration, workload, repeat) runs in its own subprocess (bench._cell) with
its own database and queues; the results go to the terminal, a JSON file and a chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from bench import baselines, report
from bench._cell import RESULT_PREFIX
from bench._stats import summarize
from bench.treadle_driver import CONFIGS as TREADLE_CONFIGS

ENGINES = ("treadle", "dbos", "celery", "procrastinate", "restate")
PEER_CONFIG = {
    "dbos": "postgres",
    "celery": "rabbitmq+postgres",
    "procrastinate": "postgres",
    "restate": "single-node",
}
WORKLOADS = {  # name: (runs at scale 1, smallest size, worker-pool cap)
    "chain10": (200, 2, None),
    "fanout100": (20, 1, None),
    "latency": (200, 5, None),
    "backlog": (10_000, 10, 50),
}
UNITS = {"chain10": 10, "fanout100": 100, "latency": 1, "backlog": 1}
REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument(
        "--configs",
        default=",".join(TREADLE_CONFIGS),
        help="Treadle configurations (peers run their own one)",
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload size")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument(
        "--treadle-rev",
        help="measure Treadle's app/ as of this git revision (a snapshot under the results "
        "cache) instead of the working tree; several, comma-separated, are measured side by "
        "side in this one invocation, their repeats interleaved (`.` is the working tree), "
        "e.g. --treadle-rev 3a35a06,.",
    )
    parser.add_argument(
        "--latest", action="store_true", help="also write bench/LATEST.md and bench/latest.png"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="Treadle on PostgreSQL: this many finished runs in the database before measuring",
    )
    args = parser.parse_args(argv)
    for option, allowed in (
        ("engines", ENGINES),
        ("configs", TREADLE_CONFIGS),
        ("workloads", tuple(WORKLOADS)),
    ):
        values = [v.strip() for v in getattr(args, option).split(",") if v.strip()]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            parser.error(
                f"--{option}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}"
            )
        setattr(args, option, values)
    return args


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_kib / 1024 / 1024,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def treadle_snapshot(rev: str, out: Path) -> tuple[str, str, str]:
    """Extract app/ at `rev` into the cache; returns (full commit, directory, import name).

    Revisions before issue 13 import their app/ as `app`, later ones as `treadle` (a link
    in the snapshot gives it that name), so both can be measured against each other."""
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = out / ".cache" / f"treadle-{commit[:12]}"
    if not (target / "app").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "app"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    init = (target / "app" / "__init__.py").read_text()
    package = "treadle" if "from treadle" in init or '"treadle.' in init else "app"
    if package == "treadle" and not (target / "treadle").exists():
        (target / "treadle").symlink_to("app")
    return commit, str(target), package


class TreadleVersion(NamedTuple):
    """One version of Treadle to measure: its label, commit ('' for the working tree) and
    the environment its cells run with."""

    label: str
    commit: str
    env: dict[str, str]


def treadle_versions(revs: str | None, out: Path) -> list[TreadleVersion]:
    """The versions `--treadle-rev` names (the working tree when it names none)."""
    if not revs:
        return [TreadleVersion("worktree", "", {})]
    versions = []
    for rev in (r.strip() for r in revs.split(",") if r.strip()):
        if rev == ".":
            env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_TREADLE_")}
            versions.append(TreadleVersion("worktree", "", env))
            continue
        commit, source, package = treadle_snapshot(rev, out)
        env = dict(os.environ, BENCH_TREADLE_SRC=source, BENCH_TREADLE_PACKAGE=package)
        versions.append(TreadleVersion(commit[:8], commit, env))
    return versions


def size(workload: str, scale: float) -> int:
    base, smallest, _ = WORKLOADS[workload]
    return max(smallest, round(base * scale))


def run_cell(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one cell in a subprocess; a timeout or crash becomes an error result."""
    limit = 240 + spec["n"] * UNITS[spec["workload"]] * 0.05
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench._cell", json.dumps(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"cell timed out after {limit:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            if result.get("status") == "ok":
                result["metrics"] = report.cell_metrics(result)
            return result
    return {
        "status": "error",
        "reason": f"cell exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}",
    }


def measure_baselines(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pg: list[float] = []
    rabbit: list[float] = []
    for i in range(args.repeat):
        print(f"baseline {i + 1}/{args.repeat}: pgbench, RabbitMQ", flush=True)
        try:
            pg.append(baselines.pgbench_tps(args.pgbench_seconds))
        except Exception as exc:
            results["baselines"]["pgbench_tps"] = f"unavailable: {exc}"
        try:
            messages = max(2000, round(20_000 * min(args.scale, 1.0)))
            rabbit.append(asyncio.run(baselines.rabbitmq_rate(messages)))
        except Exception as exc:
            results["baselines"]["rabbitmq_msgs_per_s"] = f"unavailable: {exc}"
    if pg:
        results["baselines"]["pgbench_tps"] = summarize(pg) | {"raw": pg}
    if rabbit:
        results["baselines"]["rabbitmq_msgs_per_s"] = summarize(rabbit) | {"raw": rabbit}


def plan(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    cells = []
    for workload in args.workloads:
        for engine in args.engines:
            configs = args.configs if engine == "treadle" else [PEER_CONFIG[engine]]
            cells += [(engine, config, workload) for config in configs]
    return cells


def write_outputs(results: dict[str, Any], out: Path, latest: bool) -> None:
    stamp = results["meta"]["date"].replace(":", "").replace("-", "")[:15]
    (out / f"results-{stamp}.json").write_text(json.dumps(results, indent=1))
    (out / "latest.json").write_text(json.dumps(results, indent=1))
    try:
        report.chart(results, str(out / "latest.png"))
    except Exception as exc:
        print(f"chart failed: {exc!r}", file=sys.stderr)
    if latest:
        bench_dir = REPO / "bench"
        shutil.copyfile(out / "latest.png", bench_dir / "latest.png")
        (bench_dir / "LATEST.md").write_text(report.latest_md(results, "latest.png"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.history:
        os.environ["BENCH_HISTORY_RUNS"] = str(args.history)  # the cells inherit it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine(),
            "scale": args.scale,
            "repeat": args.repeat,
            "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        },
        "baselines": {},
        "cells": [],
    }
    versions = treadle_versions(args.treadle_rev, out)
    if len(versions) == 1 and versions[0].commit:
        results["meta"]["treadle_commit"] = versions[0].commit
    elif len(versions) > 1:
        results["meta"]["treadle_commits"] = {v.label: v.commit or "worktree" for v in versions}
    if args.baselines:
        measure_baselines(args, results)
    for engine, config, workload in plan(args):
        n = size(workload, args.scale)
        variants = versions if engine == "treadle" else [TreadleVersion("", "", {})]
        cells: list[dict[str, Any]] = []
        for variant in variants:
            label = f"{engine}@{variant.label}" if len(variants) > 1 else engine
            cell: dict[str, Any] = {
                "engine": label,
                "config": config,
                "workload": workload,
                "n": n,
                "repeats": [],
            }
            results["cells"].append(cell)
            cells.append(cell)
        spec = {
            "engine": engine,
            "config": config,
            "workload": workload,
            "n": n,
            "concurrency": WORKLOADS[workload][2],
        }
        # Repeats interleave the versions, so a drift of the machine's speed hits each alike.
        live = list(zip(variants, cells, strict=True))
        for i in range(args.repeat):
            for variant, cell in list(live):
                began = time.monotonic()
                result = run_cell(spec, variant.env or None)
                cell["repeats"].append(result)
                shown = result.get("metrics") or result.get("reason", "")[:200]
                print(
                    f"{cell['engine']:13} {config:18} {workload:9} n={n:<6} #{i + 1} "
                    f"{result['status']:11} {time.monotonic() - began:6.1f}s "
                    f"{_brief(shown)}",
                    flush=True,
                )
                if result["status"] == "unavailable":
                    live.remove((variant, cell))  # the same reason will hold for the rest
        for cell in cells:
            cell["summary"] = report.summarize_repeats(cell["repeats"])
        write_outputs(results, out, latest=False)
    print()
    print(report.tables(results))
    write_outputs(results, out, latest=args.latest)
    print(f"\nresults: {out / 'latest.json'}, chart: {out / 'latest.png'}")
    return 0


def _brief(shown: Any) -> str:
    if isinstance(shown, dict):
        keys = ("units_per_s", "p50_ms", "p99_ms", "elapsed_s", "failed")
        return " ".join(f"{k}={shown[k]:.1f}" for k in keys if k in shown)
    return str(shown).replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
