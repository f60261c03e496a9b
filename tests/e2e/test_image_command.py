"""The container image's default command starts on its own, as the image configures it.

The image cannot be built here, so its ENTRYPOINT + CMD run as a process with the
Containerfile's own ENV (its data folder moved to a temporary one): on 0.0.0.0 with no
key configured it must start, write a bootstrap key, take it as Bearer, and pass its
HEALTHCHECK command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.unit.test_containerfile import env_of, final_stage

pytestmark = pytest.mark.e2e


def _image_environment(data: Path, port: int) -> tuple[dict[str, str], list[str], str]:
    """(environment, command, workdir) of the image, its data folder moved to `data`."""
    steps = final_stage()
    ops = dict(steps)
    workdir = ops["WORKDIR"]
    env = {
        key: value.replace(workdir, str(data))
        for key, value in env_of(steps).items()
        if key != "PATH"
    }
    env |= {"PATH": os.environ["PATH"], "TREADLE_API__PORT": str(port)}
    command = json.loads(ops["ENTRYPOINT"]) + json.loads(ops["CMD"])
    return env, command, ops["HEALTHCHECK"].split("CMD", 1)[1]


def test_the_default_command_starts_off_loopback_with_a_key_it_made(tmp_path: Path) -> None:
    """`treadle serve` as the image runs it: healthy, 401 without the key, 200 with it."""
    port = free_port()
    env, command, healthcheck = _image_environment(tmp_path, port)
    assert env["TREADLE_API__HOST"] == "0.0.0.0"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        treadle = [sys.executable, "-m", "treadle.cli", *command[1:]]
        proc = subprocess.Popen(treadle, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        probe = json.loads(healthcheck.strip())
        checked = subprocess.run(
            [sys.executable, *probe[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        key = Path(env["TREADLE_AUTH__BOOTSTRAP_KEY_FILE"]).read_text().strip()
        assert httpx.get(f"{url}/v1/runs", timeout=5).status_code == 401
        authorized = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/v1/runs", headers=authorized, timeout=5).status_code == 200
        assert key not in log.read_text()  # the key is in its file, never in the logs
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
