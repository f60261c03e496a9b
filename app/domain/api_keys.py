"""API keys: their format, how they are hashed at rest, and what each scope allows.

A key reads `trd_<id>_<secret>`: the id (12 hex characters) finds the row, the secret
(256 random bits) proves possession. Only SHA-256 of the secret is stored. A slow
password hash (argon2, bcrypt) exists to make guessing *low-entropy* passwords costly;
a 256-bit random secret cannot be guessed, and its digest cannot be inverted, so a slow
hash would add nothing but a CPU cost to every request (and an easy way to load the
server). Digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

import msgspec

from treadle.domain.errors import TreadleError

PREFIX = "trd"
_ID_BYTES = 6
_SECRET_BYTES = 32
_KEY = re.compile(r"trd_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")


class Scope(StrEnum):
    """What a key may do. `admin` includes `write`, which includes `read`."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A stored key: never the secret itself, only its digest."""

    id: str
    name: str
    secret_hash: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """False once revoked."""
        return self.revoked_at is None

    def allows(self, scope: Scope) -> bool:
        """Whether this key grants `scope` (a higher scope includes the lower ones)."""
        return any(_RANK[held] >= _RANK[scope] for held in self.scopes)


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly made key: `token` is shown once to the user, `record` is stored."""

    token: str
    record: ApiKey


class ScopesInvalid(TreadleError):
    """A scope list names no scope or an unknown one."""

    def __init__(self, given: str) -> None:
        self.given = given
        choices = ", ".join(s.value for s in Scope)
        super().__init__(f"scopes {given!r}: choose one or more of {choices}")


class ApiKeyNotFound(TreadleError):
    """No API key has this id."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no API key has id {key_id!r}")


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """`"read,write"` (or a list of names) as scopes, deduplicated; raises `ScopesInvalid`."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip().lower() for p in parts if p.strip()]
    try:
        found = tuple(dict.fromkeys(Scope(n) for n in names))
    except ValueError:
        raise ScopesInvalid(",".join(names)) from None
    if not found:
        raise ScopesInvalid(",".join(names))
    return found


def hash_secret(secret: str) -> str:
    """The digest stored for a secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, scopes: Iterable[Scope], now: datetime) -> NewKey:
    """A new random key named `name` with `scopes`."""
    key_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    record = ApiKey(
        id=key_id,
        name=name,
        secret_hash=hash_secret(secret),
        scopes=tuple(scopes),
        created_at=now,
    )
    return NewKey(token=f"{PREFIX}_{key_id}_{secret}", record=record)


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, or None for anything else."""
    match = _KEY.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def key_from_token(token: str, name: str, scopes: Iterable[Scope], now: datetime) -> ApiKey | None:
    """The record to store for a key made elsewhere (a deployment's bootstrap key), or None
    when `token` is not a well-formed key; like `new_key`, only the secret's digest."""
    parts = split_token(token)
    if parts is None:
        return None
    key_id, secret = parts
    return ApiKey(
        id=key_id, name=name, secret_hash=hash_secret(secret), scopes=tuple(scopes), created_at=now
    )


def secret_matches(record: ApiKey, secret: str) -> bool:
    """Whether `secret` is the one `record` was made with (constant-time compare)."""
    return hmac.compare_digest(record.secret_hash, hash_secret(secret))
