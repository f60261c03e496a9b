"""`treadle keys create | list | revoke`: API keys, managed in the database directly.

Like `migrate`, these bootstrap the server's own security, so they cannot go through the
API: they open the configured database (migrating SQLite first, as `serve` would).
`create` prints the key once, alone on stdout, so `KEY=$(treadle keys create ci)` works.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from treadle.config import ConfigError, Settings
from treadle.domain.api_keys import ApiKey, new_key, parse_scopes
from treadle.domain.auth_policy import LOCKED

if TYPE_CHECKING:
    from treadle.ports import ApiKeyStore

T = TypeVar("T")


def add_keys_parser(commands: Any) -> None:
    """The `keys` command and its actions."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys (database access)")
    sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("name", help="what the key is for, e.g. ci or dashboard")
    create.add_argument(
        "--scope",
        default="read",
        help="comma-separated scopes: read, write, admin (default: %(default)s)",
    )
    sub.add_parser("list", help="list keys (never their secrets)")
    sub.add_parser("revoke", help="revoke a key by id").add_argument("id")
    for parser in sub.choices.values():
        parser.add_argument("--config", help="a TOML settings file")


def keys_command(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    """Run one `keys` action against the configured database; returns the exit code."""
    if args.action == "create":
        scopes = parse_scopes(args.scope)  # before touching the database
        made = new_key(args.name, scopes, datetime.now(UTC))
        _with_keys(settings, lambda keys: keys.create_api_key(made.record))
        scope_text = ",".join(made.record.scopes)
        print(
            f"created API key {made.record.id} ({args.name}, scopes {scope_text}); "
            "it is shown only once:",
            file=err,
        )
        print(made.token, file=out)
    elif args.action == "list":
        _print_keys(_with_keys(settings, lambda keys: keys.list_api_keys()), out)
    else:
        key, active = _with_keys(settings, lambda keys: _revoke(keys, args.id))
        print(f"revoked API key {key.id} ({key.name})", file=out)
        if active == 0 and settings.auth.mode != "off":
            print(f"warning: that was the last active key; {LOCKED}", file=err)
    return 0


async def _revoke(keys: ApiKeyStore, key_id: str) -> tuple[ApiKey, int]:
    """Revoke the key; (it, how many keys are still active)."""
    key = await keys.revoke_api_key(key_id, datetime.now(UTC))
    return key, await keys.count_active_api_keys()


def _with_keys(settings: Settings, action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    import anyio  # noqa: PLC0415 -- the store loads only for commands that need it

    from treadle.store import MEMORY_URL, api_key_store, build_store  # noqa: PLC0415
    from treadle.wiring import migrates_on_start  # noqa: PLC0415

    if settings.database.url == MEMORY_URL:
        # A key made here would die with this command: no server could ever check it.
        reason = "memory:// keeps API keys inside the serving process; use a shared database"
        raise ConfigError("database.url", reason)

    async def run() -> T:
        store = build_store(settings.database)
        try:
            if migrates_on_start(settings):
                await store.migrate()
            return await action(api_key_store(store))
        finally:
            await store.close()

    return anyio.run(run)


def _print_keys(keys: list[ApiKey], out: TextIO) -> None:
    rows = [("ID", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            k.id,
            k.name,
            ",".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=out)


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else "-"
