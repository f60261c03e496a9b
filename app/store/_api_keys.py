"""The `ApiKeyStore` on SQLAlchemy Core, sharing a `SqlStore`'s database and pool."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Row, func, select, update

from treadle.domain.api_keys import ApiKey, ApiKeyNotFound, parse_scopes
from treadle.store._database import Database
from treadle.store._errors import mapped_errors
from treadle.store._tables import api_keys


class SqlApiKeyStore:
    """API keys in `treadle_api_keys`; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new key."""
        values = {
            "id": key.id,
            "name": key.name,
            "secret_hash": key.secret_hash,
            "scopes": ",".join(key.scopes),
            "created_at": key.created_at,
            "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at,
        }
        with mapped_errors("create_api_key"):
            async with self._db.transaction(write=True) as conn:
                await conn.execute(api_keys.insert(), values)

    async def get_api_key(self, key_id: str) -> ApiKey:
        """The key, revoked or not; raises `ApiKeyNotFound`."""
        with mapped_errors("get_api_key"):
            async with self._db.transaction(write=False) as conn:
                row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise ApiKeyNotFound(key_id)
        return _from_row(row)

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        stmt = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        with mapped_errors("list_api_keys"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
        return [_from_row(r) for r in found]

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey:
        """Revoke the key; revoking again keeps the first time. Raises `ApiKeyNotFound`."""
        stmt = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        with mapped_errors("revoke_api_key"):
            async with self._db.transaction(write=True) as conn:
                await conn.execute(stmt)
        return await self.get_api_key(key_id)

    async def count_active_api_keys(self) -> int:
        """How many keys are not revoked."""
        stmt = select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
        with mapped_errors("count_active_api_keys"):
            async with self._db.transaction(write=False) as conn:
                return int((await conn.execute(stmt)).scalar_one())

    async def count_api_keys(self) -> int:
        """How many keys were ever created, revoked ones too (rows are never deleted)."""
        stmt = select(func.count()).select_from(api_keys)
        with mapped_errors("count_api_keys"):
            async with self._db.transaction(write=False) as conn:
                return int((await conn.execute(stmt)).scalar_one())

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        """Record when each key was last used (one UPDATE per key, one transaction)."""
        if not used:
            return
        with mapped_errors("touch_api_keys"):
            async with self._db.transaction(write=True) as conn:
                for key_id, at in sorted(used.items()):  # a fixed order: no lock cycles
                    stmt = update(api_keys).where(api_keys.c.id == key_id)
                    await conn.execute(stmt.values(last_used_at=at))


def _from_row(row: Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        name=m["name"],
        secret_hash=m["secret_hash"],
        scopes=parse_scopes(m["scopes"]),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )
