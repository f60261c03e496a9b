"""A deployment's first API key from configuration: read, checked, stored hashed, once."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from tests.ports import free_port
from treadle.config import (
    ApiSettings,
    AuthSettings,
    ConfigError,
    DatabaseSettings,
    Settings,
    load_settings,
)
from treadle.domain.api_keys import Scope, hash_secret, new_key, secret_matches, split_token
from treadle.serving.bootstrap import BOOTSTRAP_KEY_NAME, bootstrap_token, ensure_bootstrap_key
from treadle.serving.serve import serve
from treadle.store import api_key_store, build_store
from treadle.store.memory import MemoryStore

pytestmark = pytest.mark.anyio
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])
"""SQLAlchemy's async engine (the SQLite store) runs on asyncio only."""


def a_key() -> str:
    """A key as the README tells an operator to make one (openssl's hex digits)."""
    return f"trd_{secrets.token_hex(6)}_{secrets.token_hex(32)}"


def test_the_key_and_its_file_parse_from_the_environment() -> None:
    """`TREADLE_AUTH__BOOTSTRAP_KEY[_FILE]` set `auth.bootstrap_key[_file]`; unset is empty."""
    token = a_key()
    settings = load_settings(
        environ={
            "TREADLE_AUTH__BOOTSTRAP_KEY": token,
            "TREADLE_AUTH__BOOTSTRAP_KEY_FILE": "/run/secrets/key",
        }
    )
    assert settings.auth.bootstrap_key == token
    assert settings.auth.bootstrap_key_file == "/run/secrets/key"
    assert load_settings(environ={}).auth == AuthSettings()
    assert bootstrap_token(AuthSettings()) is None


def test_a_key_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    """A mounted Secret's file (newline and all) gives the key and names the file setting."""
    token = a_key()
    (tmp_path / "key").write_text(token + "\n")
    auth = AuthSettings(bootstrap_key_file=str(tmp_path / "key"))
    assert bootstrap_token(auth) == ("auth.bootstrap_key_file", token)
    assert bootstrap_token(AuthSettings(bootstrap_key=token)) == ("auth.bootstrap_key", token)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("change-me", id="not-a-key"),
        pytest.param("trd_12345_abcdefghijklmnopqrstuvwxyz", id="short-id"),
        pytest.param("trd_0123456789ab_short", id="short-secret"),
        pytest.param("trd_0123456789ab_" + "a" * 30 + " x", id="space"),
    ],
)
def test_a_malformed_key_is_a_start_up_error_that_does_not_echo_it(bad: str) -> None:
    """A value that is not `trd_<12 hex>_<secret>` names the setting and the format only."""
    with pytest.raises(ConfigError) as refused:
        bootstrap_token(AuthSettings(bootstrap_key=bad))
    assert refused.value.key == "auth.bootstrap_key"
    assert "trd_<12 hex digits>_" in str(refused.value)
    assert bad not in str(refused.value)


def test_a_missing_key_file_or_both_settings_are_start_up_errors(tmp_path: Path) -> None:
    """An unreadable file names it; setting the key and the file at once is refused."""
    with pytest.raises(ConfigError) as missing:
        bootstrap_token(AuthSettings(bootstrap_key_file=str(tmp_path / "absent")))
    assert missing.value.key == "auth.bootstrap_key_file"
    assert "absent" in missing.value.reason
    with pytest.raises(ConfigError, match="not both"):
        bootstrap_token(AuthSettings(bootstrap_key=a_key(), bootstrap_key_file="/k"))


async def test_the_key_is_stored_as_a_digest_with_the_admin_scope() -> None:
    """The stored record has the key's id and SHA-256 of its secret, never the secret."""
    keys = MemoryStore()
    token = a_key()
    assert await ensure_bootstrap_key(keys, "auth.bootstrap_key", token, T0) is True
    key_id, secret = split_token(token)  # type: ignore[misc]
    (stored,) = await keys.list_api_keys()
    assert stored.id == key_id
    assert stored.name == BOOTSTRAP_KEY_NAME
    assert stored.scopes == (Scope.ADMIN,)
    assert stored.secret_hash == hash_secret(secret)
    assert secret not in repr(stored)
    assert secret_matches(stored, secret)


@ON_ASYNCIO
async def test_a_restart_changes_nothing_and_a_revoked_key_stays_revoked(tmp_path: Path) -> None:
    """On a real database across store restarts: stored once, then left as it is."""
    settings = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}")
    token = a_key()
    key_id = token.split("_")[1]
    outcomes = []
    for restart in range(3):
        store = build_store(settings)
        try:
            await store.migrate()
            keys = api_key_store(store)
            outcomes.append(await ensure_bootstrap_key(keys, "auth.bootstrap_key", token, T0))
            if restart == 1:
                await keys.revoke_api_key(key_id, T0)
            listed = await keys.list_api_keys()
        finally:
            await store.close()
    assert outcomes == [True, False, False]
    assert [(k.id, k.active) for k in listed] == [(key_id, False)]


async def test_replicas_starting_together_store_the_key_once() -> None:
    """Two api processes racing on one database both start; one key is stored."""
    keys = MemoryStore()
    token = a_key()
    outcomes: list[bool] = []

    async def start() -> None:
        outcomes.append(await ensure_bootstrap_key(keys, "auth.bootstrap_key", token, T0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        tg.start_soon(start)
    assert sorted(outcomes) == [False, True]
    assert await keys.count_api_keys() == 1


async def test_an_id_stored_with_another_secret_is_a_start_up_error() -> None:
    """A configured key whose id belongs to another stored key would never authenticate."""
    keys = MemoryStore()
    other = new_key("ci", (Scope.READ,), T0)
    await keys.create_api_key(other.record)
    clash = f"trd_{other.record.id}_{secrets.token_hex(32)}"
    with pytest.raises(ConfigError, match="different secret") as refused:
        await ensure_bootstrap_key(keys, "auth.bootstrap_key_file", clash, T0)
    assert refused.value.key == "auth.bootstrap_key_file"
    assert await keys.list_api_keys() == [other.record]


class _Started(Exception):
    """Raised by `on_ready` to end a serve that got past its start-up checks."""


@ON_ASYNCIO
async def test_serve_off_loopback_starts_on_a_fresh_database_with_a_bootstrap_key(
    tmp_path: Path,
) -> None:
    """With no key yet, 0.0.0.0 plus a bootstrap key passes the open-listen refusal."""
    token = a_key()
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        api=ApiSettings(host="0.0.0.0", port=free_port()),
        auth=AuthSettings(bootstrap_key=token),
    )

    def ready(process: object) -> None:
        # Raised before serve's task group yields: the listener never binds.
        raise _Started

    with pytest.RaisesGroup(_Started, allow_unwrapped=True, flatten_subgroups=True):
        await serve(settings, roles={"api"}, on_ready=ready)
    store = build_store(settings.database)
    try:
        stored = [k.id for k in await api_key_store(store).list_api_keys()]
    finally:
        await store.close()
    assert stored == [token.split("_")[1]]


@ON_ASYNCIO
async def test_serve_refuses_a_malformed_bootstrap_key_before_it_connects(tmp_path: Path) -> None:
    """A bad key stops start-up with the setting's name; no database file is created."""
    database = tmp_path / "treadle.db"
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"),
        auth=AuthSettings(bootstrap_key="change-me"),
    )
    with pytest.raises(ConfigError) as refused:
        await serve(settings, roles={"api"})
    assert refused.value.key == "auth.bootstrap_key"
    assert not database.exists()


def test_a_missing_key_file_is_created_with_a_new_private_key_when_asked(tmp_path: Path) -> None:
    """`bootstrap_key_create` writes a fresh key (mode 0600) once; later starts read it."""
    path = tmp_path / "bootstrap-key"
    auth = AuthSettings(bootstrap_key_file=str(path), bootstrap_key_create=True)
    setting, token = bootstrap_token(auth)  # type: ignore[misc]
    assert setting == "auth.bootstrap_key_file"
    assert split_token(token) is not None
    assert path.read_text() == token + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert bootstrap_token(auth) == (setting, token)  # a restart keeps the key


def test_a_missing_key_file_is_an_error_unless_creating_is_asked(tmp_path: Path) -> None:
    """Without `bootstrap_key_create` nothing is written and start-up stops."""
    path = tmp_path / "bootstrap-key"
    with pytest.raises(ConfigError, match="cannot read"):
        bootstrap_token(AuthSettings(bootstrap_key_file=str(path)))
    assert not path.exists()


def test_a_key_file_made_meanwhile_is_kept_and_no_staging_file_is_left(tmp_path: Path) -> None:
    """Creating never replaces a file that appeared first (another replica's key)."""
    path = tmp_path / "bootstrap-key"
    theirs = a_key()
    path.write_text(theirs + "\n")
    auth = AuthSettings(bootstrap_key_file=str(path), bootstrap_key_create=True)
    from treadle.serving import bootstrap  # noqa: PLC0415 -- the private step itself

    bootstrap._create_key_file(path)
    assert bootstrap_token(auth) == ("auth.bootstrap_key_file", theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bootstrap-key"]


def test_a_key_file_that_cannot_be_created_names_the_setting(tmp_path: Path) -> None:
    """A folder that does not exist is a start-up error, not a traceback."""
    auth = AuthSettings(
        bootstrap_key_file=str(tmp_path / "absent" / "bootstrap-key"), bootstrap_key_create=True
    )
    with pytest.raises(ConfigError, match="cannot create") as refused:
        bootstrap_token(auth)
    assert refused.value.key == "auth.bootstrap_key_file"
