"""`treadle keys create | list | revoke`: API keys, managed in the database directly.

Like `migrate`, these bootstrap the server's own security, so they cannot go through the
API: they open the configured database (migrating SQLite first, as `serve` would).
`create` prints the key once, alone on stdout, so `KEY=$(treadle keys create ci)` works.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import msgspec

from treadle.cli._console import Console
from treadle.cli._output import show_line, show_list, show_result, show_table
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
    console = Console(out=out, err=err)
    where = database_in_use(settings, creating=args.action == "create")
    if args.action == "create":
        scopes = parse_scopes(args.scope)  # before touching the database
        made = new_key(args.name, scopes, datetime.now(UTC))
        _with_keys(settings, lambda keys: keys.create_api_key(made.record))
        scope_text = ",".join(made.record.scopes)
        print(
            f"created API key {made.record.id} ({args.name}, scopes {scope_text}) in {where}; "
            "it is shown only once:",
            file=err,
        )
        # The token alone on stdout, even on a terminal: `KEY=$(treadle keys create ci)`.
        result = {"id": made.record.id, "name": args.name, "scopes": list(made.record.scopes)}
        token_line = lambda: print(made.token, file=out)  # noqa: E731
        show_result(args, console, result | {"token": made.token}, token_line)
    elif args.action == "list":
        found = _with_keys(settings, lambda keys: keys.list_api_keys())
        header = ("ID", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED")
        show_list(
            args,
            console,
            ([_public(k) for k in found], None),
            lambda _: show_table(console, header, [_row(k) for k in found]),
            "keys",
        )
    else:
        key, active = _with_keys(settings, lambda keys: _revoke(keys, args.id))
        line = f"revoked API key {key.id} ({key.name})"
        result = {"id": key.id, "name": key.name, "revoked_at": key.revoked_at}
        show_result(args, console, result, lambda: show_line(console, line, "yellow"))
        if active == 0 and settings.auth.mode != "off":
            print(f"warning: that was the last active key; {LOCKED}", file=err)
    return 0


def database_in_use(settings: Settings, *, creating: bool) -> str:
    """The database the command opens, as it names it in its messages.

    An SQLite file is relative to the current folder: run from another folder, `keys list`
    would silently create and read an empty database the server never sees. A missing file
    is refused (`keys create` makes it, saying so, as `serve` would in this folder).
    """
    from treadle.observability import strip_url_passwords  # noqa: PLC0415

    url = settings.database.url
    shown = strip_url_passwords(url)
    path = sqlite_path(url)
    if path is None:
        return shown
    if not path.exists() and not creating:
        reason = (
            f"no database at {path} ({shown}, relative to {Path.cwd()}); run `treadle keys` "
            "in the folder `treadle serve` runs in, or set TREADLE_DATABASE_URL (or --config) "
            "to the server's database"
        )
        raise ConfigError("database.url", reason)
    return f"{shown} ({path}{'' if path.exists() else ', a new file'})"


def sqlite_path(url: str) -> Path | None:
    """The absolute file of an SQLite URL; None for another database or an in-memory one."""
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite"):
        return None
    database = rest.partition("?")[0]
    if not database or database == ":memory:":
        return None
    return Path(database).resolve()


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


def _public(key: ApiKey) -> dict[str, Any]:
    """A key as JSON, without the digest of its secret."""
    body: dict[str, Any] = msgspec.to_builtins(key)
    del body["secret_hash"]
    return body


def _row(k: ApiKey) -> tuple[str, ...]:
    return (
        k.id,
        k.name,
        ",".join(k.scopes),
        _when(k.created_at),
        _when(k.last_used_at),
        _when(k.revoked_at),
    )


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at is not None else "-"
