"""The API key store on every database: create, read, list, revoke, count, touch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from treadle.domain.api_keys import ApiKeyNotFound, Scope, new_key, secret_matches, split_token
from treadle.store import api_key_store
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def test_a_created_key_reads_back_with_its_digest_and_scopes(store: SqlStore) -> None:
    """A stored key comes back equal, and only the digest of its secret is kept."""
    keys = api_key_store(store)
    made = new_key("ci", (Scope.READ, Scope.WRITE), T0)
    await keys.create_api_key(made.record)
    got = await keys.get_api_key(made.record.id)
    assert got == made.record
    parts = split_token(made.token)
    assert parts is not None
    assert parts[1] not in got.secret_hash
    assert secret_matches(got, parts[1])


async def test_revoking_keeps_the_key_listed_and_stops_counting_it(store: SqlStore) -> None:
    """A revoked key stays in the list with its revocation time and leaves the active count."""
    keys = api_key_store(store)
    first = new_key("a", (Scope.ADMIN,), T0).record
    second = new_key("b", (Scope.READ,), T0 + timedelta(seconds=1)).record
    await keys.create_api_key(first)
    await keys.create_api_key(second)
    assert await keys.count_active_api_keys() == 2
    revoked = await keys.revoke_api_key(first.id, T0 + timedelta(minutes=1))
    again = await keys.revoke_api_key(first.id, T0 + timedelta(minutes=2))
    assert revoked.revoked_at == again.revoked_at == T0 + timedelta(minutes=1)
    assert await keys.count_active_api_keys() == 1
    assert [k.id for k in await keys.list_api_keys()] == [first.id, second.id]


async def test_touch_records_last_use_in_one_batch(store: SqlStore) -> None:
    """`touch_api_keys` writes each key's last use; unknown ids are ignored."""
    keys = api_key_store(store)
    made = new_key("a", (Scope.READ,), T0).record
    await keys.create_api_key(made)
    await keys.touch_api_keys({made.id: T0 + timedelta(hours=1), "000000000000": T0})
    assert (await keys.get_api_key(made.id)).last_used_at == T0 + timedelta(hours=1)


async def test_an_unknown_id_is_api_key_not_found(store: SqlStore) -> None:
    """Reading or revoking a key nobody made raises `ApiKeyNotFound` with the id."""
    keys = api_key_store(store)
    with pytest.raises(ApiKeyNotFound) as read:
        await keys.get_api_key("abcdefabcdef")
    with pytest.raises(ApiKeyNotFound):
        await keys.revoke_api_key("abcdefabcdef", T0)
    assert read.value.key_id == "abcdefabcdef"


async def test_revoked_keys_still_count_as_known(store: SqlStore) -> None:
    """`count_api_keys` counts every key ever created, so revoking them all is visible."""
    keys = api_key_store(store)
    assert await keys.count_api_keys() == 0
    made = new_key("only", (Scope.ADMIN,), T0).record
    await keys.create_api_key(made)
    await keys.revoke_api_key(made.id, T0 + timedelta(minutes=1))
    assert await keys.count_active_api_keys() == 0
    assert await keys.count_api_keys() == 1
