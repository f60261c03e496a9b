"""`promtool check metrics` (Debian's `prometheus` package) over a /metrics body."""

from __future__ import annotations

import shutil
import subprocess

import pytest

PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus; .ci/run does)"
)


def promtool_complaints(exposition: bytes | str) -> str:
    """What promtool objects to in `exposition` (empty when it passes every lint)."""
    assert PROMTOOL is not None
    body = exposition.encode() if isinstance(exposition, str) else exposition
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    complaints = (done.stdout + done.stderr).decode().strip()
    return complaints or ("" if done.returncode == 0 else f"exit {done.returncode}")
