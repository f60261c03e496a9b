"""The fault-injection harness: `treadle serve` roles as subprocesses, a steady load of
workflows journalled by the client, faults injected while it runs, then invariants
checked from the database and the API once the system has settled.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.brokers import NATS_URL, delete_namespace_of
from tests.e2e.conftest import SMALL_POOL, free_port
from tests.faults.handlers import LEDGER_DDL, LEDGER_ENV

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
SHARED_BROKERS = (RABBITMQ_URL, NATS_URL)
TERMINAL = ("completed", "failed", "cancelled", "timed_out")
# A process imports in ~2 s on a quiet machine but up to ~25 s on a loaded one: the wait
# scales (TREADLE_FAULT_READY_SECONDS) and fails only when a process is plainly stuck.
READY_SECONDS = float(os.environ.get("TREADLE_FAULT_READY_SECONDS", "90"))

RETRY = {"max_attempts": 6, "initial_interval": "200ms", "backoff": 1.5, "max_interval": "1s"}


def _step(after: list[str] | None = None, **input: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"handler": "fault.step", "retry": RETRY, "timeout": "8s"}
    task["input"] = {"seconds": 0.1, **input}
    if after:
        task["after"] = after
    return task


WORKFLOWS: list[dict[str, Any]] = [
    {"name": "f-seq", "tasks": {"a": _step(), "b": _step(["a"]), "c": _step(["b"])}},
    {
        "name": "f-fan",
        "tasks": {
            "root": _step(),
            **{f"l{i}": _step(["root"]) for i in range(4)},
            "join": _step([f"l{i}" for i in range(4)]),
        },
    },
    {
        "name": "f-nap",
        "tasks": {
            "one": _step(),
            "nap": {"type": "sleep", "duration": "1s", "after": ["one"]},
            "two": _step(["nap"]),
        },
    },
    {"name": "f-retry", "tasks": {"flaky": _step(fail_times=1), "after": _step(["flaky"])}},
    # One attempt of 1s against a 3s start-to-close timeout: a worker stopped past it loses
    # the attempt to a retry.
    {"name": "f-slow", "tasks": {"slow": {**_step(seconds=1.0), "timeout": "3s"}}},
]


@dataclass
class Proc:
    """One `treadle serve` process and how to start it again."""

    roles: str
    port: int
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def rss_kib(self) -> int:
        """Resident memory, from /proc."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


@dataclass
class Journal:
    """Every start request the client made and the answer it got."""

    entries: list[tuple[str, str, int | None, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, workflow: str, status: int | None, run_id: str | None) -> None:
        with self.lock:
            self.entries.append((key, workflow, status, run_id))

    def accepted(self) -> dict[str, str]:
        """Idempotency key -> run id, for every key that got a 200/201."""
        with self.lock:
            return {k: r for k, _, s, r in self.entries if s in (200, 201) and r}


class Cluster:
    """Processes on one fresh database and one broker namespace (or the in-process one).

    The broker is the shared RabbitMQ unless `transport` and `broker_url` name another
    (`broker_env` adds the settings it needs); a namespace on a shared broker is deleted on
    close, a private broker goes away with its test.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        memory: bool = False,
        transport: str = "rabbitmq",
        broker_url: str = RABBITMQ_URL,
        broker_env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.memory = memory
        self.procs: list[Proc] = []
        self.journal = Journal()
        self.faults = Counter[str]()
        self.last_fault = time.monotonic()
        self.loaded = threading.Event()
        self.began = time.monotonic()
        self.shared_broker = not memory and broker_url in SHARED_BROKERS
        if memory:
            self.db_name = ""
            self.database_url = f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
            self.ledger = str(tmp_path / "ledger.db")
            broker = {"TREADLE_TRANSPORT": "memory"}
        else:
            self.db_name = f"treadle_fault_{uuid.uuid4().hex[:12]}"
            _admin(f"CREATE DATABASE {self.db_name}")
            self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}"
            self.ledger = f"postgresql://postgres@127.0.0.1:5432/{self.db_name}"
            broker = {
                "TREADLE_TRANSPORT": transport,
                "TREADLE_BROKER_URL": broker_url,
                "TREADLE_TRANSPORT__NAMESPACE": f"fault-{uuid.uuid4().hex[:10]}",
                **(broker_env or {}),
            }
        self.env = {
            **os.environ,
            **broker,
            "TREADLE_DATABASE_URL": self.database_url,
            "TREADLE_DATABASE__MIGRATE_ON_START": "true" if memory else "false",
            **SMALL_POOL,  # parallel clusters share max_connections
            "TREADLE_ORCHESTRATOR__TIMER_POLL_SECONDS": "0.2",
            "TREADLE_ORCHESTRATOR__SWEEP_INTERVAL_SECONDS": "0.5",
            "TREADLE_ORCHESTRATOR__OUTBOX_STALE_SECONDS": "1",
            "TREADLE_WORKER__DRAIN_SECONDS": "10",
            "TREADLE_API__SHUTDOWN_DELAY_SECONDS": "2",
            "TREADLE_WORKER__CONCURRENCY": "8",
            "TREADLE_HANDLERS": "tests.faults.handlers",
            LEDGER_ENV: self.ledger,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("TREADLE_CRASH_AT", None)
        self._ledger_tables()
        if not memory:
            self._migrate()

    # --- processes ---------------------------------------------------------------------

    def _migrate(self) -> None:
        cmd = [sys.executable, "-m", "treadle.cli", "migrate"]
        done = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def _ledger_tables(self) -> None:
        for ddl in LEDGER_DDL:
            self.ledger_rows(ddl)

    def start(self, roles: str, crash_at: str | None = None, **env: str) -> Proc:
        """Start a process with `roles` (optionally armed with a crash point); wait ready."""
        proc = self.spawn(roles, crash_at, **env)
        self.wait_ready(proc)
        return proc

    def start_all(self, *roles: str, **crash: str) -> list[Proc]:
        """Start one process per entry of `roles` at once (crash points by role); wait ready."""
        procs = [self.spawn(r, crash.get(r)) for r in roles]
        for proc in procs:
            self.wait_ready(proc)
        return procs

    def spawn(self, roles: str, crash_at: str | None = None, **env: str) -> Proc:
        """Start a process with `roles` without waiting for it."""
        port = free_port()
        log = self.tmp_path / f"{roles.replace(',', '-')}-{port}.log"
        proc_env = {**self.env, **env}
        if crash_at:
            proc_env["TREADLE_CRASH_AT"] = crash_at
        proc = Proc(roles, port, log, proc_env, self._spawn(roles, port, log, proc_env))
        self.procs.append(proc)
        return proc

    def _spawn(
        self, roles: str, port: int, log: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "treadle.cli", "serve", "--roles", roles, "--port", str(port)]
        with log.open("ab") as out:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, proc: Proc) -> None:
        """Until /readyz answers 200; fail with the log if the process dies or stalls."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if not proc.alive():
                pytest.fail(f"{proc.roles} exited {proc.popen.returncode}:\n{self.tail(proc)}")
            try:
                if httpx.get(f"{proc.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{proc.roles} not ready after {READY_SECONDS}s:\n{self.tail(proc)}")

    def restart(self, proc: Proc, *, disarm: bool = True, wait: bool = True) -> None:
        """Start a dead process again on the same port (without its crash point)."""
        if disarm:
            proc.env.pop("TREADLE_CRASH_AT", None)
        proc.popen = self._spawn(proc.roles, proc.port, proc.log, proc.env)
        if wait:
            self.wait_ready(proc)

    def kill(self, proc: Proc, fault: str = "kill -9") -> None:
        """SIGKILL and reap, counting the fault."""
        proc.signal(signal.SIGKILL)
        proc.popen.wait()
        self.fault(fault)

    def fault(self, name: str) -> None:
        """Count one injected fault and note when it happened (recovery is timed from it)."""
        self.faults[name] += 1
        self.last_fault = time.monotonic()

    def revive_crashed(self) -> int:
        """Restart every process that died at its crash point (exit 137); how many."""
        revived = 0
        for proc in self.procs:
            if not proc.alive() and proc.popen.returncode == 137:
                self.fault(f"crash point {proc.env.get('TREADLE_CRASH_AT')}")
                self.restart(proc)
                revived += 1
        return revived

    def wait_loaded(self, timeout: float = 120) -> None:
        """Until the load has started all its runs, restarting crashed processes meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.loaded.is_set() and time.monotonic() < deadline:
            self.revive_crashed()
            self.loaded.wait(0.1)
        assert self.loaded.is_set(), f"the load did not finish within {timeout}s"

    def api(self) -> str:
        """The URL of a live api process."""
        for proc in self.procs:
            if "api" in proc.roles and proc.alive():
                return proc.url
        return next(p.url for p in self.procs if "api" in p.roles)

    def tail(self, proc: Proc, lines: int = 40) -> str:
        text = proc.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{self.tail(p, 25)}" for p in self.procs)

    def close(self) -> None:
        """Kill every process, drop the database."""
        for proc in self.procs:
            proc.signal(signal.SIGKILL)
            proc.popen.wait()
        if self.db_name:
            _admin(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        if self.shared_broker:
            delete_namespace_of(self.env)

    # --- workflows and load ------------------------------------------------------------

    def register(self) -> None:
        """Register the suite's workflows through the API."""
        for definition in WORKFLOWS:
            answer = httpx.post(f"{self.api()}/v1/workflows", json=definition, timeout=10)
            assert answer.status_code in (200, 201), answer.text

    def start_run(
        self, workflow: str, key: str | None = None, input: dict[str, Any] | None = None
    ) -> str | None:
        """POST /v1/runs with an Idempotency-Key, retrying the same key through failures
        for as long as a restarted api may take to come back."""
        key = key or uuid.uuid4().hex
        deadline = time.monotonic() + READY_SECONDS + 30
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(
                    f"{self.api()}/v1/runs",
                    json={"workflow": workflow, "input": input or {}},
                    headers={"Idempotency-Key": key},
                    timeout=10,
                )
            except httpx.HTTPError:
                self.journal.add(key, workflow, None, None)
                time.sleep(0.3)
                continue
            run_id = answer.json().get("id") if answer.status_code in (200, 201) else None
            self.journal.add(key, workflow, answer.status_code, run_id)
            if run_id:
                return str(run_id)
            time.sleep(0.3)
        return None

    @contextmanager
    def load(
        self, runs: int, every: float = 0.1, workflows: list[str] | None = None
    ) -> Iterator[None]:
        """Start `runs` runs of every workflow in turn, one per `every` seconds (or until
        exit); `loaded` is set once they are all started."""
        names = workflows or [w["name"] for w in WORKFLOWS if w["name"] != "f-slow"]
        stop = threading.Event()
        self.loaded.clear()

        def drive() -> None:
            for i in range(runs):
                if stop.is_set():
                    break
                self.start_run(names[i % len(names)])
                stop.wait(every)
            self.loaded.set()

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=READY_SECONDS + 60)

    # --- settling and invariants -------------------------------------------------------

    def settle(self, timeout: float = 180, only: Collection[str] | None = None) -> float:
        """Wait until every accepted run (or every run in `only`) is terminal; seconds since
        the last fault."""
        deadline = time.monotonic() + timeout
        runs: dict[str, str] = {}
        while time.monotonic() < deadline:
            self.revive_crashed()
            runs = self.statuses()
            wanted = self.journal.accepted().values() if only is None else only
            if all(runs.get(r) in TERMINAL for r in wanted):
                return time.monotonic() - self.last_fault
            time.sleep(0.3)
        wanted = self.journal.accepted().values() if only is None else only
        stuck = {r: runs.get(r) for r in wanted}
        stuck = {r: s for r, s in stuck.items() if s not in TERMINAL}
        pytest.fail(f"{len(stuck)} runs not terminal: {list(stuck.items())[:10]}\n{self.logs()}")

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a query on the engine's database (read outside the engine)."""
        if self.memory:
            path = self.database_url.removeprefix("sqlite+aiosqlite:///")
            with sqlite3.connect(path, timeout=30) as conn:
                return list(conn.execute(query).fetchall())
        with psycopg.connect(self.ledger, autocommit=True) as conn:
            cursor = conn.execute(query)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def ledger_rows(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a query on the ledger (the same PostgreSQL database, or its own file)."""
        if self.memory:
            with sqlite3.connect(self.ledger, timeout=30) as conn:
                return list(conn.execute(query).fetchall())
        return self.sql(query)

    def terminate_backends(self) -> int:
        """pg_terminate_backend on this test's database only; how many were cut."""
        query = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{self.db_name}' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            cut = len(conn.execute(query).fetchall())  # type: ignore[arg-type]
        self.fault("pg_terminate_backend")
        return cut

    def statuses(self) -> dict[str, str]:
        return dict(self.sql("SELECT id, status FROM treadle_runs"))

    def check(self, lost: Collection[str] = ()) -> Report:
        """Assert every invariant of the issue; return the counts for the report.

        `lost` names runs a scenario knows the broker lost (a broker that keeps nothing
        across a restart): they are exempt from completing and counted in the report.
        """
        accepted = self.journal.accepted()
        kept = {key: run_id for key, run_id in accepted.items() if run_id not in lost}
        statuses = self.statuses()
        report = Report(
            runs=len(accepted),
            faults=sum(self.faults.values()),
            kinds=dict(self.faults),
            wall_seconds=time.monotonic() - self.began,
            lost=len(accepted) - len(kept),
        )
        _check_runs(kept, statuses, self.journal)
        _check_keys(self.sql("SELECT idempotency_key, id FROM treadle_runs"), accepted)
        _check_tasks(self)
        _check_api(self, kept)
        return report


@dataclass
class Supervisor:
    """Starts a process again each time it dies, as systemd's `Restart=always` or a
    Kubernetes pod's restart policy would, counting the deaths and their exit codes."""

    cluster: Cluster
    proc: Proc
    deaths: list[int] = field(default_factory=list)
    """The exit code of each death, in order."""
    crash_loop: int = 10
    """Deaths after which `wait_for` gives up: the process is crash-looping."""

    def revive(self) -> bool:
        """If the process is dead, record its exit code and start it again (no wait)."""
        if self.proc.alive():
            return False
        code = self.proc.popen.returncode
        self.deaths.append(code)
        self.cluster.fault(f"process exit {code}")
        self.cluster.restart(self.proc, disarm=False, wait=False)
        return True

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Until `done()` (an HTTP error counts as not yet), reviving the process meanwhile;
        fail on a crash loop or at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.revive()
            assert len(self.deaths) < self.crash_loop, (
                f"crash loop: {self.deaths} waiting for {what}\n{self.cluster.tail(self.proc)}"
            )
            try:
                if done():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"not {what} after {timeout}s (deaths {self.deaths}):\n{self.cluster.logs()}")

    def start_run(self, workflow: str) -> str:
        """POST /v1/runs with one Idempotency-Key until it is answered, reviving the
        process meanwhile (it may die before it answers); the run id."""
        key = uuid.uuid4().hex
        started: list[str] = []

        def post() -> bool:
            answer = httpx.post(
                f"{self.proc.url}/v1/runs",
                json={"workflow": workflow, "input": {}},
                headers={"Idempotency-Key": key},
                timeout=10,
            )
            run_id = answer.json()["id"] if answer.status_code in (200, 201) else None
            self.cluster.journal.add(key, workflow, answer.status_code, run_id)
            if run_id:
                started.append(run_id)
            return bool(started)

        self.wait_for(post, f"{workflow} started")
        return started[0]

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as the API answers it now."""
        answer = httpx.get(f"{self.proc.url}/v1/runs/{run_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def wait_terminal(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        """The run once the API reports it terminal, reviving the process meanwhile."""
        self.wait_for(lambda: self.run(run_id)["status"] in TERMINAL, f"{run_id} terminal", timeout)
        return self.run(run_id)


@dataclass
class Report:
    """What one scenario did."""

    runs: int
    faults: int
    kinds: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    recovery_seconds: float = 0.0
    lost: int = 0

    def show(self, name: str) -> None:
        """One `FAULT-SCENARIO` line (the root conftest repeats these in the summary)."""
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(self.kinds.items()))
        print(
            f"\nFAULT-SCENARIO {name}: runs={self.runs} faults={self.faults} ({kinds}) "
            f"lost={self.lost} recovery={self.recovery_seconds:.1f}s wall={self.wall_seconds:.0f}s"
        )


def _check_runs(accepted: dict[str, str], statuses: dict[str, str], journal: Journal) -> None:
    missing = [r for r in accepted.values() if r not in statuses]
    assert not missing, f"answered runs missing from the store: {missing}"
    not_done = {r: statuses[r] for r in accepted.values() if statuses[r] != "completed"}
    assert not not_done, f"runs that did not complete: {not_done}"
    per_key: dict[str, set[str]] = {}
    for key, _, _, run_id in journal.entries:
        if run_id:
            per_key.setdefault(key, set()).add(run_id)
    split = {k: v for k, v in per_key.items() if len(v) > 1}
    assert not split, f"one idempotency key answered with several runs: {split}"


def _check_keys(rows: list[tuple[Any, ...]], accepted: dict[str, str]) -> None:
    by_key = Counter(key for key, _ in rows if key)
    assert not [k for k, n in by_key.items() if n > 1], "a key maps to several runs"
    stored = {key: run_id for key, run_id in rows if key}
    wrong = {k: r for k, r in accepted.items() if stored.get(k) != r}
    assert not wrong, f"keys answered with a run the store does not map them to: {wrong}"


def _check_tasks(cluster: Cluster) -> None:
    completed = Counter(
        (run_id, task_id)
        for run_id, task_id in cluster.sql(
            "SELECT run_id, task_id FROM treadle_history WHERE type = 'task.completed'"
        )
    )
    twice = [k for k, n in completed.items() if n > 1]
    assert not twice, f"tasks completed twice in the history: {twice}"
    tasks = cluster.sql(
        "SELECT run_id, task_id, attempt, output FROM treadle_tasks"
        " WHERE type = 'handler' AND status = 'completed'"
    )
    assert all(completed[(r, t)] == 1 for r, t, _, _ in tasks)
    ledger = {
        (r, t, a, p)
        for r, t, a, p in cluster.ledger_rows(
            "SELECT run_id, task_id, attempt, pid FROM fault_ledger"
        )
    }
    effects = dict(cluster.ledger_rows("SELECT idempotency_key, n FROM fault_effects"))
    ran = {(r, t) for r, t, _, _ in ledger}
    for run_id, task_id, attempt, raw in tasks:
        output = json.loads(raw) if isinstance(raw, str) else raw
        assert output["attempt"] == attempt, (run_id, task_id, output, attempt)
        assert (run_id, task_id, attempt, output["pid"]) in ledger, (run_id, task_id, output)
        assert (run_id, task_id) in ran
    assert effects
    assert min(effects.values()) >= 1


def _check_api(cluster: Cluster, accepted: dict[str, str]) -> None:
    """A sample of runs read through the API agrees with the store."""
    for run_id in list(accepted.values())[:: max(1, len(accepted) // 10)]:
        body = httpx.get(f"{cluster.api()}/v1/runs/{run_id}", timeout=10).json()
        assert body["status"] == "completed", body
        assert all(t["status"] in ("completed", "skipped") for t in body["tasks"]), body


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]
