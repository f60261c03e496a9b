"""The web dashboard: static ES modules served by the api role at `/ui`, no build step.

`index.html` answers `/ui` and every `/ui/...` path that is not a static file (the page
routes on the URL hash, so deep links work whichever form they take); the browser code
lives in `static/` and talks only to the public `/v1` API, `/readyz` and `/metrics`, and
reads its own settings (`[ui]`) at `/ui/settings.json`. The server's root `/` redirects
to `/ui`, so the address `treadle serve` prints opens it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from litestar import Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.params import FromPath
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from treadle.config import UiSettings

__all__ = ["STATIC_DIR", "ui_routes"]

STATIC_DIR = Path(__file__).parent / "static"

# Defence in depth against XSS: the page renders every user string as text, and the
# policy forbids inline scripts and any script or connection to another origin.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _index() -> Response[bytes]:
    return Response(
        (STATIC_DIR / "index.html").read_bytes(),
        media_type="text/html",
        headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


@get("/", include_in_schema=False, sync_to_thread=False)
def _home() -> Response[bytes]:
    """The dashboard's entry page."""
    return _index()


@get("/{rest:path}", include_in_schema=False, sync_to_thread=False)
def _page(rest: FromPath[str]) -> Response[bytes]:
    """Any deeper page of the dashboard: the same document, which routes on the client."""
    del rest  # the page routes on the URL hash; the path only has to reach this handler
    return _index()


@get("/", include_in_schema=False, sync_to_thread=False)
def _root() -> Redirect:
    """The server's root: a person opening it wants the dashboard."""
    return Redirect("/ui", status_code=302)


class _PageSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the page reads at `/ui/settings.json`; null for a setting left empty."""

    trace_url_template: str | None


def _settings_route(ui: UiSettings) -> Any:
    body = msgspec.json.encode(_PageSettings(trace_url_template=ui.trace_url_template or None))

    @get("/settings.json", include_in_schema=False, sync_to_thread=False)
    def settings() -> Response[bytes]:
        """The dashboard's settings (`[ui]` in the config)."""
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    return settings


def ui_routes(ui: UiSettings | None = None) -> list[Router]:
    """The route handlers to mount on the api role's app: the dashboard under `/ui`, its
    settings, and `/` redirecting to it."""
    static = create_static_files_router(
        path="/ui/static",
        directories=[STATIC_DIR],
        name="ui-static",
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
    handlers = [_home, _settings_route(ui or UiSettings()), _page]
    pages = Router(path="/ui", route_handlers=handlers, include_in_schema=False)
    root = Router(path="/", route_handlers=[_root], include_in_schema=False)
    return [static, pages, root]
