"""`treadle serve` and `treadle migrate`, and the settings local commands read; the engine
loads only when one of them runs."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from treadle.cli._console import EXIT_OK, Console
from treadle.cli._output import show_line, show_result
from treadle.cli._workflows import read_definition
from treadle.config import Settings, load_settings

EXAMPLE_MODULE = "treadle.examples.quickstart"  # ships in the package: works from any folder
ALL_ROLES = ("api", "orchestrator", "worker")


def roles_argument(text: str) -> set[str]:
    """argparse `type=` for `--roles api,worker`."""
    roles = {part.strip() for part in text.split(",") if part.strip()}
    unknown = roles - set(ALL_ROLES)
    if not roles or unknown:
        bad = ", ".join(sorted(unknown)) or "none given"
        msg = f"unknown role(s) {bad}; choose from {', '.join(ALL_ROLES)}"
        raise argparse.ArgumentTypeError(msg)
    return roles


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the engine (api, orchestrator, worker)")
    serve.add_argument("--roles", type=roles_argument, default=set(ALL_ROLES))
    serve.add_argument("--handlers", nargs="+", default=[], metavar="MODULE")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", help="a TOML settings file")
    serve.add_argument("--example", action="store_true", help="load the quick-start example")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve a non-loopback address without API keys (only behind a proxy that "
        "authenticates)",
    )


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings from the config file and environment, then the command-line overrides."""
    settings = load_settings(getattr(args, "config", None))
    api = settings.api
    if getattr(args, "host", None):
        api = msgspec.structs.replace(api, host=args.host)
    if getattr(args, "port", None) is not None:
        api = msgspec.structs.replace(api, port=args.port)
    auth = settings.auth
    if getattr(args, "insecure_no_auth", False):
        auth = msgspec.structs.replace(auth, allow_insecure=True)
    return msgspec.structs.replace(settings, api=api, auth=auth)


def serve_command(args: argparse.Namespace) -> int:
    import anyio  # noqa: PLC0415 -- the engine loads only for `serve` and `migrate`

    from treadle.observability import configure_logging  # noqa: PLC0415
    from treadle.serving.serve import serve  # noqa: PLC0415

    settings = settings_for(args)
    # JSON lines unless stdout is a terminal (log.format = auto), for every logger.
    configure_logging(settings.log, role=",".join(sorted(args.roles)))
    # Like uvicorn's --app-dir: `--handlers mypkg.tasks` works from a project folder.
    sys.path.insert(0, os.getcwd())
    modules = list(args.handlers)
    on_ready = None
    if args.example:
        modules.append(EXAMPLE_MODULE)
        on_ready = _register_definition(_example_definition())
    anyio.run(
        lambda: serve(settings, roles=set(args.roles), handler_modules=modules, on_ready=on_ready)
    )
    return EXIT_OK


def _example_definition() -> dict[str, Any]:
    module = importlib.import_module(EXAMPLE_MODULE)
    return read_definition(Path(str(module.__file__)).with_name("quickstart.yaml"))


def _register_definition(definition: dict[str, Any]) -> Callable[[Any], Any]:
    async def register(process: Any) -> None:
        await process.run_service.register_workflow(definition)

    return register


def migrate_command(args: argparse.Namespace, console: Console) -> int:
    import anyio  # noqa: PLC0415

    from treadle.observability import strip_url_passwords  # noqa: PLC0415
    from treadle.wiring import migrate  # noqa: PLC0415

    settings = settings_for(args)
    anyio.run(migrate, settings)
    database = strip_url_passwords(settings.database.url)
    line = f"database at {database} is migrated"
    result = {"database": database, "migrated": True}
    show_result(args, console, result, lambda: show_line(console, line, "green"))
    return EXIT_OK
