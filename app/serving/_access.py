"""Who may read `/metrics` in a process without the api role: the api's rule, kept here.

The api's guard (`treadle.modules.api._auth`) asks for a key with the `read` scope on
`/metrics` whenever keys are required, unless `auth.open_metrics`; a worker or an
orchestrator listening on the same network must not hand its metrics to anyone who asks.
This is that rule over the same domain functions, without litestar (a worker never loads
it), so one scrape config with one key fits every role.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from treadle.config import AuthSettings
from treadle.domain.api_keys import ApiKey, ApiKeyNotFound, Scope, secret_matches, split_token
from treadle.domain.auth_policy import LOCKED, keys_required
from treadle.ports import ApiKeyStore

_PROBLEM = "urn:treadle:problem:"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a scrape is refused: the HTTP status and an RFC 9457 problem body."""

    status: int
    title: str
    detail: str

    def body(self) -> bytes:
        """The problem+json document, shaped like the api's own refusals."""
        kind = "unauthenticated" if self.status == 401 else "forbidden"
        problem = {"type": _PROBLEM + kind, "title": self.title, "status": self.status}
        return msgspec.json.encode({**problem, "detail": self.detail})


class MetricsAccess:
    """Checks the `Authorization` header of a `/metrics` request (key counts cached)."""

    def __init__(
        self,
        keys: ApiKeyStore,
        settings: AuthSettings,
        *,
        loopback: bool,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._settings = settings
        self._loopback = loopback
        self._monotonic = monotonic
        self._counts: tuple[float, int, int] | None = None

    async def refusal(self, authorization: str | None) -> Refusal | None:
        """None when the request may read the metrics, else why not."""
        if self._settings.open_metrics:
            return None
        active, known = await self._key_counts()
        required = keys_required(
            self._settings.mode,
            loopback=self._loopback,
            active_keys=active,
            allow_insecure=self._settings.allow_insecure,
            known_keys=known,
        )
        if not required:
            return None
        reason = await self._key_refusal(authorization)
        if reason is not None and active == 0 and known > 0:
            return _unauthenticated(LOCKED)
        return reason

    async def _key_refusal(self, authorization: str | None) -> Refusal | None:
        if not authorization:
            return _unauthenticated("this request needs an API key: Authorization: Bearer <key>")
        scheme, _, token = authorization.strip().partition(" ")
        parts = split_token(token.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            return _unauthenticated("the Authorization header must read: Bearer trd_<id>_<secret>")
        key = await self._key(parts[0])
        if key is None or not secret_matches(key, parts[1]):
            return _unauthenticated("the API key is not valid")
        if not key.active:
            return _unauthenticated(f"the API key {key.id} was revoked")
        if not key.allows(Scope.READ):
            detail = f"API key {key.id} lacks the 'read' scope this request needs"
            return Refusal(status=403, title="Scope missing", detail=detail)
        return None

    async def _key(self, key_id: str) -> ApiKey | None:
        try:
            return await self._keys.get_api_key(key_id)
        except ApiKeyNotFound:
            return None

    async def _key_counts(self) -> tuple[int, int]:
        now = self._monotonic()
        if self._counts is None or now - self._counts[0] >= self._settings.cache_seconds:
            active = await self._keys.count_active_api_keys()
            known = await self._keys.count_api_keys() if active == 0 else active
            self._counts = (now, active, known)
        return self._counts[1], self._counts[2]


def _unauthenticated(detail: str) -> Refusal:
    return Refusal(status=401, title="Authentication required", detail=detail)
