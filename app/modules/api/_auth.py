"""API authentication: a guard that checks `Authorization: Bearer <key>` and its scope.

Which scope a request needs follows from its method and path (`required_scope`): reads
need `read`, every change needs `write`; `/healthz`, `/readyz`, `/schema` and the `/ui`
pages stay open (the dashboard asks for a key and sends it on its own API calls).

Key lookups are cached in-process for `auth.cache_seconds`, so a revoked key stops
working within that bound; last-use times are collected and written in one batch every
`auth.last_used_interval_seconds`, never on the request's own path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    SecurityScheme,
)

from treadle.config import AuthSettings
from treadle.domain.api_keys import ApiKey, ApiKeyNotFound, Scope, secret_matches, split_token
from treadle.domain.auth_policy import LOCKED, keys_required
from treadle.domain.errors import TreadleError
from treadle.modules.api._errors import PROBLEM_MEDIA_TYPE, Forbidden, Unauthenticated
from treadle.modules.api._open_mode import check_open_request
from treadle.observability import get_logger
from treadle.ports import ApiKeyStore

log = get_logger("treadle.api.auth")

_OPEN_PREFIXES = ("/schema", "/ui")
_OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/favicon.ico"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_CACHE_LIMIT = 10_000  # ids cached at most, so random ids cannot grow memory without end
SCHEME = "bearerAuth"


def required_scope(method: str, path: str, *, open_metrics: bool = False) -> Scope | None:
    """The scope a request needs, or None for the open operational and UI routes."""
    if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
        return None
    if path == "/metrics":
        return None if open_metrics else Scope.READ
    if path.startswith("/v1/keys"):
        return Scope.ADMIN
    return Scope.READ if method.upper() in _READS else Scope.WRITE


class _KeyCounts(msgspec.Struct, frozen=True, kw_only=True):
    active: int
    known: int
    """Keys ever created, revoked ones too (at least `active`)."""


class Authenticator:
    """Checks keys against an `ApiKeyStore`, with a short in-process cache."""

    def __init__(
        self,
        keys: ApiKeyStore,
        settings: AuthSettings,
        *,
        loopback: bool,
        allowed_hosts: Collection[str] = (),
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._settings = settings
        self._loopback = loopback
        self._allowed_hosts = tuple(allowed_hosts)
        self._monotonic = monotonic
        self._now = now
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._counts: tuple[float, _KeyCounts] | None = None
        self._used: dict[str, datetime] = {}
        self._flushed_at = monotonic()

    @property
    def open_metrics(self) -> bool:
        """Whether /metrics is served without a key."""
        return self._settings.open_metrics

    async def guard(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        """Litestar guard: raise `Unauthenticated` or `Forbidden` unless the request may pass."""
        scope = required_scope(
            str(connection.scope.get("method", "GET")),
            connection.url.path,
            open_metrics=self._settings.open_metrics,
        )
        if not await self.required():
            # Nothing proves the caller: refuse what a web page could send (_open_mode).
            headers = {k.lower(): v for k, v in connection.headers.items()}
            method = str(connection.scope.get("method", "GET"))
            check_open_request(method, headers, self._allowed_hosts, loopback=self._loopback)
        elif scope is not None:
            await self.check(connection.headers.get("authorization"), scope)

    async def check(self, authorization: str | None, scope: Scope) -> ApiKey | None:
        """The key that grants `scope`, or None when keys are not required right now."""
        if not await self.required():
            return None
        try:
            key = await self._authenticate(authorization)
        except Unauthenticated:
            counts = await self._key_counts()
            if counts.active == 0 and counts.known > 0:  # no key can pass: how to get in
                raise Unauthenticated(LOCKED) from None
            raise
        if not key.allows(scope):
            raise Forbidden(key.id, scope.value)
        await self._record_use(key.id)
        return key

    async def required(self) -> bool:
        """Whether keys are required now (auto mode looks for active keys, cached)."""
        mode = self._settings.mode
        if mode != "auto":
            return mode == "keys"
        counts = await self._key_counts()
        return keys_required(
            mode,
            loopback=self._loopback,
            active_keys=counts.active,
            allow_insecure=self._settings.allow_insecure,
            known_keys=counts.known,
        )

    async def _key_counts(self) -> _KeyCounts:
        now = self._monotonic()
        if self._counts is None or now - self._counts[0] >= self._settings.cache_seconds:
            active = await self._keys.count_active_api_keys()
            # Rows are never deleted: a revoked key still counts as known.
            known = await self._keys.count_api_keys() if active == 0 else active
            self._counts = (now, _KeyCounts(active=active, known=known))
        return self._counts[1]

    async def _authenticate(self, authorization: str | None) -> ApiKey:
        if not authorization:
            raise Unauthenticated("this request needs an API key: Authorization: Bearer <key>")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must read: Bearer <key>")
        parts = split_token(token.strip())
        if parts is None:
            raise Unauthenticated("the API key is malformed (expected trd_<id>_<secret>)")
        key = await self._lookup(parts[0])
        if key is None or not secret_matches(key, parts[1]):
            raise Unauthenticated("the API key is not valid")
        if not key.active:
            raise Unauthenticated(f"the API key {key.id} was revoked")
        return key

    async def _lookup(self, key_id: str) -> ApiKey | None:
        now = self._monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._settings.cache_seconds:
            return cached[1]
        try:
            key: ApiKey | None = await self._keys.get_api_key(key_id)
        except ApiKeyNotFound:
            key = None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key_id] = (now, key)
        return key

    async def _record_use(self, key_id: str) -> None:
        self._used[key_id] = self._now()
        now = self._monotonic()
        if now - self._flushed_at < self._settings.last_used_interval_seconds:
            return
        # Taken before the write, so concurrent requests do not write the same batch.
        batch, self._used, self._flushed_at = self._used, {}, now
        try:
            await self._keys.touch_api_keys(batch)
        except TreadleError as exc:
            # Last-use times are a convenience; a failed write must not fail the request.
            log.warning("could not record API key use", error=str(exc))


# --- OpenAPI ----------------------------------------------------------------------------


def declare_security(openapi: OpenAPI, *, open_metrics: bool) -> None:
    """Add the bearer scheme, and 401/403 answers, to every operation that needs a key."""
    components = openapi.components
    if isinstance(components, list):  # litestar allows a list; ours is one object
        components = components[0]
    components = components or Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API key from `treadle keys create`: trd_<id>_<secret>.",
        ),
    }
    openapi.components = components
    problem = Reference(ref="#/components/schemas/Problem")
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            operation: Operation | None = getattr(item, method, None)
            scope = required_scope(method, path, open_metrics=open_metrics)
            if operation is None or scope is None:
                continue
            operation.security = [{SCHEME: []}]
            responses = operation.responses if operation.responses is not None else {}
            for code, text in (("401", "No valid API key"), ("403", f"The key lacks {scope}")):
                responses.setdefault(
                    code,
                    OpenAPIResponse(
                        description=text,
                        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=problem)},
                    ),
                )
            operation.responses = responses
