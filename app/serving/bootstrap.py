"""A deployment's first API key, given as configuration (`auth.bootstrap_key[_file]`).

A fresh install that listens off loopback needs a key before its first request, and a
container platform can hand it one only as a Secret: the api role stores that key at
start-up (only its digest, like `treadle keys create`), once. A restart, or a second
replica starting at the same moment, finds the id stored and changes nothing, so a key
revoked later stays revoked.

With `auth.bootstrap_key_create` (the container image sets it) a missing key file is
made, with a new random key, so a container started with no configuration listens on its
published port at once: the operator reads the key from the file, never from the logs.
"""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime
from pathlib import Path

from treadle.config import AuthSettings, ConfigError
from treadle.domain.api_keys import (
    ApiKey,
    ApiKeyNotFound,
    Scope,
    key_from_token,
    new_key,
    split_token,
)
from treadle.observability import get_logger
from treadle.ports import ApiKeyStore
from treadle.store import StoreError

log = get_logger(__name__)

BOOTSTRAP_KEY_NAME = "bootstrap"
_FORMAT = (
    "is not an API key: it reads trd_<12 hex digits>_<20 to 100 of A-Z a-z 0-9 _ ->, "
    """e.g. printf 'trd_%s_%s' "$(openssl rand -hex 6)" "$(openssl rand -hex 32)\""""
)


def bootstrap_token(auth: AuthSettings) -> tuple[str, str] | None:
    """(the setting it came from, the key) configured as the first key, or None.

    Raises `ConfigError` naming the setting when both are set, the file cannot be read,
    or the value is not a well-formed key (never echoing the value: it is a secret)."""
    if auth.bootstrap_key and auth.bootstrap_key_file:
        reason = (
            "set auth.bootstrap_key or auth.bootstrap_key_file, not both (the container "
            "image sets the file: give TREADLE_AUTH__BOOTSTRAP_KEY_FILE= empty to use the key)"
        )
        raise ConfigError("auth.bootstrap_key_file", reason)
    if auth.bootstrap_key_file:
        key = "auth.bootstrap_key_file"
        path = Path(auth.bootstrap_key_file)
        if auth.bootstrap_key_create and not path.exists():
            _create_key_file(path)
        token = _read_key_file(path)
    elif auth.bootstrap_key:
        key, token = "auth.bootstrap_key", auth.bootstrap_key.strip()
    else:
        return None
    if split_token(token) is None:
        raise ConfigError(key, _FORMAT)
    return key, token


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()  # a Secret file may end in a newline
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        raise ConfigError("auth.bootstrap_key_file", reason) from None


def _create_key_file(path: Path) -> None:
    """Write a new key to `path`, readable by this user only. The file appears whole (a
    private temporary file, then a hard link that fails if `path` exists), so a replica
    sharing the volume reads either no file or the whole key, and the first one made wins."""
    token = new_key(BOOTSTRAP_KEY_NAME, (Scope.ADMIN,), datetime.now(UTC)).token
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(token + "\n")
        os.link(staging, path)
    except FileExistsError:
        return  # another process made it first: its key is the one
    except OSError as exc:
        reason = f"cannot create {path}: {exc.strerror or exc}"
        raise ConfigError("auth.bootstrap_key_file", reason) from None
    finally:
        staging.unlink(missing_ok=True)
    log.warning("bootstrap API key created: read it from the file", path=str(path))


async def ensure_bootstrap_key(keys: ApiKeyStore, setting: str, token: str, now: datetime) -> bool:
    """Store the key unless its id is stored already; True when this call stored it.

    Raises `ConfigError` when the id is stored with another secret: that is some other
    key, and the configured one would never authenticate."""
    record = key_from_token(token, BOOTSTRAP_KEY_NAME, (Scope.ADMIN,), now)
    if record is None:
        raise ConfigError(setting, _FORMAT)
    if await _stored_same(keys, record, setting):
        return False
    try:
        await keys.create_api_key(record)
    except StoreError:
        # Another replica stored it between the read and the insert (the id is the key).
        if await _stored_same(keys, record, setting):
            return False
        raise
    log.info("bootstrap API key stored", key_id=record.id, scopes="admin")
    return True


async def _stored_same(keys: ApiKeyStore, record: ApiKey, setting: str) -> bool:
    """Whether `record`'s id is stored, with its secret; ConfigError for another secret."""
    try:
        stored = await keys.get_api_key(record.id)
    except ApiKeyNotFound:
        return False
    if not hmac.compare_digest(stored.secret_hash, record.secret_hash):
        reason = (
            f"API key {record.id} is stored with a different secret, so this key would "
            "never authenticate: configure a new key (another id)"
        )
        raise ConfigError(setting, reason)
    if not stored.active:
        log.warning("bootstrap API key is revoked; left revoked", key_id=record.id)
    return True
