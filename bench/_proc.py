"""Subprocesses the engines need: start with a log file, wait for readiness, stop, peak RSS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


class StartFailed(RuntimeError):
    """A service the benchmark needs did not come up; carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process in its own process group, with stdout and stderr in a log file."""

    def __init__(
        self,
        role: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.role = role
        self.log_path = log_dir / f"{role}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise StartFailed(f"{self.role} exited with {self.popen.returncode}:\n{self.tail()}")

    def wait_http(self, url: str, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
        """Poll `url` until it answers one of `ok`, failing early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code in ok:
                    return
            time.sleep(0.1)
        raise StartFailed(f"{self.role} not ready at {url} after {timeout}s:\n{self.tail()}")

    def wait_log(self, needle: str, timeout: float = 60.0) -> None:
        """Wait until the log contains `needle`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if needle in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise StartFailed(f"{self.role} did not log {needle!r} in {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM) in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, grandchildren, ...)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        kids = [int(k) for k in text.split()]
        found.extend(kids)
        frontier.extend(kids)
    return found


def tree_peak_rss(role: str, pid: int) -> dict[str, float]:
    """Peak RSS of a process and, if it has children, of each child (role/child-N)."""
    out: dict[str, float] = {}
    own = peak_rss_mb(pid)
    if own is not None:
        out[role] = round(own, 1)
    for index, child in enumerate(descendants(pid)):
        rss = peak_rss_mb(child)
        if rss is not None:
            out[f"{role}/child-{index}"] = round(rss, 1)
    return out
