"""API key format, digests, scopes, and the policy deciding when keys are required."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from treadle.config import AuthSettings
from treadle.domain.api_keys import (
    Scope,
    ScopesInvalid,
    hash_secret,
    new_key,
    parse_scopes,
    secret_matches,
    split_token,
)
from treadle.domain.auth_policy import is_loopback, keys_required, serve_refusal
from treadle.modules.api._auth import required_scope

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_new_key_reads_trd_id_secret_and_stores_only_the_digest() -> None:
    """The token splits back into its id and secret; the record keeps SHA-256 of the secret."""
    made = new_key("ci", (Scope.READ,), T0)
    parts = split_token(made.token)
    assert parts is not None
    key_id, secret = parts
    assert made.token.startswith(f"trd_{key_id}_")
    assert made.record.id == key_id
    assert made.record.secret_hash == hash_secret(secret) != secret
    assert len(secret) >= 40  # 32 random bytes, base64url


def test_two_keys_never_share_id_or_secret() -> None:
    """Keys are random: a hundred of them are all different."""
    tokens = {new_key("k", (Scope.READ,), T0).token for _ in range(100)}
    ids = {split_token(t)[0] for t in tokens}  # type: ignore[index]
    assert len(tokens) == len(ids) == 100


@pytest.mark.parametrize(
    "token",
    [
        "",
        "trd_",
        "trd_abc_secret",
        "Bearer trd_x",
        "trd_0123456789ab",
        "xyz_0123456789ab_" + "a" * 40,
    ],
)
def test_malformed_tokens_do_not_split(token: str) -> None:
    """Anything but `trd_<12 hex>_<secret>` is rejected before any lookup."""
    assert split_token(token) is None


def test_only_the_right_secret_matches() -> None:
    """`secret_matches` accepts the key's own secret and nothing else."""
    made = new_key("ci", (Scope.READ,), T0)
    _, secret = split_token(made.token)  # type: ignore[misc]
    assert secret_matches(made.record, secret)
    assert not secret_matches(made.record, secret[:-1] + ("A" if secret[-1] != "A" else "B"))


def test_scopes_nest_admin_over_write_over_read() -> None:
    """admin grants write and read; write grants read; read grants only read."""

    def grants(held: Scope) -> set[Scope]:
        record = new_key("k", (held,), T0).record
        return {s for s in Scope if record.allows(s)}

    assert grants(Scope.READ) == {Scope.READ}
    assert grants(Scope.WRITE) == {Scope.READ, Scope.WRITE}
    assert grants(Scope.ADMIN) == set(Scope)


def test_scope_lists_parse_and_reject_unknown_names() -> None:
    """`read, Write` parses (deduplicated, case-folded); unknown or empty lists are errors."""
    assert parse_scopes("read, Write,read") == (Scope.READ, Scope.WRITE)
    with pytest.raises(ScopesInvalid):
        parse_scopes("read,root")
    with pytest.raises(ScopesInvalid):
        parse_scopes(" , ")


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/schema/openapi.json", None),
        ("GET", "/ui/runs", None),
        ("GET", "/metrics", Scope.READ),
        ("GET", "/v1/runs", Scope.READ),
        ("POST", "/v1/runs", Scope.WRITE),
        ("POST", "/v1/runs/r1/cancel", Scope.WRITE),
        ("DELETE", "/v1/schedules/s1", Scope.WRITE),
        ("POST", "/v1/workflows", Scope.WRITE),
        ("GET", "/v1/keys", Scope.ADMIN),
    ],
)
def test_each_route_needs_the_expected_scope(method: str, path: str, scope: Scope | None) -> None:
    """Reads need read, changes need write, operations and the UI pages are open."""
    assert required_scope(method, path) == scope


def test_metrics_can_be_opened_by_config() -> None:
    """`auth.open_metrics` lets a scraper without a key read /metrics."""
    assert required_scope("GET", "/metrics", open_metrics=True) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only addresses that accept local connections alone count as loopback."""
    assert is_loopback(host) is loopback


def test_auto_mode_requires_keys_once_one_exists_or_off_loopback() -> None:
    """auto: open on loopback with no keys; required with a key, or off loopback."""

    def required(**kw: object) -> bool:
        return keys_required("auto", **{"allow_insecure": False, **kw})  # type: ignore[arg-type]

    assert not required(loopback=True, active_keys=0)
    assert required(loopback=True, active_keys=1)
    assert required(loopback=False, active_keys=0)
    assert not keys_required("auto", loopback=False, active_keys=0, allow_insecure=True)
    assert keys_required("keys", loopback=True, active_keys=0, allow_insecure=False)
    assert not keys_required("off", loopback=False, active_keys=3, allow_insecure=False)


def test_auto_mode_stays_locked_once_every_key_is_revoked() -> None:
    """auto: keys that existed and were all revoked keep keys required, on loopback too."""
    assert keys_required("auto", loopback=True, active_keys=0, allow_insecure=False, known_keys=1)
    assert keys_required("auto", loopback=False, active_keys=0, allow_insecure=True, known_keys=2)
    assert not keys_required(
        "off", loopback=True, active_keys=0, allow_insecure=False, known_keys=1
    )


def test_serve_refuses_non_loopback_without_keys_unless_insecure() -> None:
    """A public bind needs a key (or auth on with keys), or the explicit insecure flag."""
    auto, off = AuthSettings(), AuthSettings(mode="off")
    assert serve_refusal(auto, host="127.0.0.1", active_keys=0) is None
    reason = serve_refusal(auto, host="0.0.0.0", active_keys=0)
    assert reason is not None
    assert "treadle keys create" in reason
    assert "auth.bootstrap_key_file" in reason
    assert "--insecure-no-auth" in reason
    assert serve_refusal(auto, host="0.0.0.0", active_keys=1) is None
    assert "auth.mode is off" in (serve_refusal(off, host="0.0.0.0", active_keys=1) or "")
    insecure = AuthSettings(mode="off", allow_insecure=True)
    assert serve_refusal(insecure, host="0.0.0.0", active_keys=0) is None
