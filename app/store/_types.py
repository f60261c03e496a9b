"""Column types that keep Python values honest across SQLite, PostgreSQL and MySQL.

SQLite and MySQL store timestamps without a zone, so every timestamp goes in as UTC and
comes out aware. JSON values are msgspec-encoded text, decoded into their declared type
by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import BigInteger, DateTime, Dialect, Integer, LargeBinary, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

# MySQL's plain TEXT/BLOB stop at 64 KiB and DATETIME drops microseconds; keyset cursors
# compare timestamps exactly, so the precise variants matter.
JSON_TEXT: TypeEngine[str] = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
BYTES: TypeEngine[bytes] = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
TIMESTAMP: TypeEngine[datetime] = DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
BIG_ID: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is aware UTC in Python, whatever the database keeps."""

    impl = TIMESTAMP
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite hands back text from aggregates like MIN()
            value = datetime.fromisoformat(value)
        return as_utc(value)


_encoder = msgspec.json.Encoder()


def decode_json(raw: str | bytes | None, type_: Any) -> Any:
    """Decode a JSON column value into `type_` (kept raw by the table so it is typed once)."""
    if raw is None:
        return None
    return msgspec.json.decode(raw, type=type_)


def encode_json(value: Any) -> str | None:
    """The text a JSON column stores for `value`."""
    if value is None:
        return None
    return _encoder.encode(value).decode()
