""".ci/run ends only what it started, by pid: never every process of a name or a user."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "run"


def _code_lines() -> list[str]:
    """The script's lines without comments (a `#` after a space starts one)."""
    return [re.split(r"(^|\s)#", line)[0] for line in SCRIPT.read_text().splitlines()]


def test_the_script_parses() -> None:
    """`bash -n` finds no syntax error."""
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_no_process_is_ended_by_its_name() -> None:
    """No pkill, killall or pgrep-fed kill: a shared machine's other brokers stay up."""
    broad = re.compile(r"\b(pkill|killall|pgrep)\b")
    assert [line for line in _code_lines() if broad.search(line)] == []


def _function(name: str) -> str:
    match = re.search(rf"^{name}\(\) {{.*?^}}$", SCRIPT.read_text(), re.M | re.S)
    assert match, name
    return match.group(0)


def test_a_wedged_rabbitmq_is_stopped_through_its_own_pid_file() -> None:
    """The pid file comes from RABBITMQ_PID_FILE when set, else the configured node's."""
    helper = _function("rabbitmq_pid_file")
    run = ["bash", "-c", f"{helper}\nrabbitmq_pid_file"]
    given = subprocess.run(
        run,
        env={"RABBITMQ_PID_FILE": "/run/r.pid", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert given.stdout.strip() == "/run/r.pid"
    default = subprocess.run(
        run, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"/var/lib/rabbitmq/mnesia/rabbit@\S+\.pid", default.stdout.strip())
    stop = _function("stop_rabbitmq")
    assert 'rabbitmqctl stop "$file"' in stop
    assert 'kill -TERM "$pid"' in stop
