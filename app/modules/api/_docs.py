"""The API docs page at `/schema`, with its Swagger UI files served by Treadle itself.

litestar's render plugins load their scripts and styles from a CDN by default, so the page
was blank without internet (an air-gapped cluster, a laptop on a train). The files ship in
`swagger_ui/` (refreshed by `python -m tools.vendor_swagger_ui VERSION`) and are served
under `/schema/assets/`, which is open like the rest of `/schema`.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

SWAGGER_UI_DIR = Path(__file__).with_name("swagger_ui")
SCHEMA_PATH = "/schema"
"""Where the OpenAPI router is mounted (`OpenAPIConfig.path`)."""
_ASSETS = "/assets"
"""The files' folder under it."""
_FAVICON = "<link rel='icon' type='image/svg+xml' href='/ui/static/favicon.svg'>"


class _OfflineSwagger(SwaggerRenderPlugin):
    """Swagger UI whose page loads nothing from another origin."""

    def __init__(self, schema_path: str) -> None:
        assets = f"{schema_path}{_ASSETS}"
        super().__init__(
            path="/",
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=_FAVICON,  # the dashboard's own, instead of one on a CDN
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        # Registered on the OpenAPI router (mounted at `schema_path`): the files live with
        # the page.
        router.register(
            create_static_files_router(
                path=_ASSETS,
                directories=[SWAGGER_UI_DIR],
                name="schema-assets",
                # The file names carry no version: revalidate, then 304 while unchanged.
                cache_control=CacheControlHeader(no_cache=True),
                include_in_schema=False,
            )
        )


def docs_render_plugins(schema_path: str = SCHEMA_PATH) -> list[OpenAPIRenderPlugin]:
    """For `OpenAPIConfig(path=schema_path, render_plugins=...)`: Swagger UI at
    `schema_path`, the document at `{schema_path}/openapi.json`."""
    return [_OfflineSwagger(schema_path), JsonRenderPlugin()]
