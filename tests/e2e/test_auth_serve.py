"""`treadle serve` and `treadle keys` as processes: refusal off loopback, keys end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, free_port, start_server
from treadle.cli import build_parser, settings_for

pytestmark = pytest.mark.e2e


def _treadle(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "treadle.cli", *args],
        cwd=ROOT,
        env={**os.environ, "TREADLE_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    """On 0.0.0.0 with no key and no flag, serve exits 2 with a message saying what to do."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
    done = _treadle(db, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no API keys exist and 0.0.0.0 is not a loopback address" in done.stderr
    assert "treadle keys create" in done.stderr
    assert "--insecure-no-auth" in done.stderr


def test_the_insecure_flag_is_the_only_way_past_the_refusal() -> None:
    """`--insecure-no-auth` sets `auth.allow_insecure`; without it the setting stays off."""
    parser = build_parser()
    plain = settings_for(parser.parse_args(["serve", "--host", "0.0.0.0"]))
    flagged = settings_for(parser.parse_args(["serve", "--host", "0.0.0.0", "--insecure-no-auth"]))
    assert not plain.auth.allow_insecure
    assert flagged.auth.allow_insecure


def test_keys_created_with_the_cli_gate_a_running_server(tmp_path: Path) -> None:
    """A key from `keys create` works as Bearer; read scope cannot write; revoked stops it."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
    reader = _treadle(db, "keys", "create", "dash", "--scope", "read")
    assert reader.returncode == 0, reader.stderr
    token = reader.stdout.strip()
    assert token.startswith("trd_")
    # A second key stays active after the first is revoked (revoking the last one
    # would lock the API: tests/integration/api/test_auth.py).
    assert _treadle(db, "keys", "create", "ops", "--scope", "admin").returncode == 0
    server = start_server(tmp_path, db)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        assert server.http.get("/v1/runs").status_code == 401
        assert server.http.get("/v1/runs", headers=auth).status_code == 200
        denied = server.http.post("/v1/workflows", json={"name": "x", "tasks": {}}, headers=auth)
        assert denied.status_code == 403
        listed = _treadle(db, "keys", "list")
        assert "dash" in listed.stdout
        assert token not in listed.stdout  # never the secret
        key_id = token.split("_")[1]
        assert _treadle(db, "keys", "revoke", key_id).returncode == 0
        deadline = time.monotonic() + 8  # the lookup cache holds a key for 5 s
        while server.http.get("/v1/runs", headers=auth).status_code == 200:
            assert time.monotonic() < deadline, "revoked key still accepted after 8 s"
            time.sleep(0.2)
        assert server.http.get("/v1/runs", headers=auth).status_code == 401
        assert server.stop() == 0
        assert token not in server.log.read_text()  # the key never reaches the logs
    finally:
        server.stop()
