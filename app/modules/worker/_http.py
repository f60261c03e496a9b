"""The `http` task type: one request per attempt, run by a worker with httpx.

An attempt substitutes its secrets, checks the request, asks the host's circuit breaker,
has the SSRF guard vet (and pin) the target, sends, reads at most
`http.max_response_bytes`, and shapes the answer into the output. Every failure becomes
an `ErrorInfo` through one table (`_ERRORS`), and secret values are redacted from the
output and from every message.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from treadle.config import HttpSettings
from treadle.domain.state import ErrorInfo
from treadle.modules.worker._breaker import (
    CircuitBreakers,
    CircuitOpen,
    StateListener,
    breaker_gauge,
)
from treadle.modules.worker._http_shape import (
    HttpCall,
    HttpRedirectRefused,
    HttpRequestInvalid,
    HttpResponseTooLarge,
    checked_url,
    parse_call,
    shape_output,
    status_error,
)
from treadle.modules.worker._http_transport import Pins, pinned_transport
from treadle.modules.worker._secrets import (
    SecretMissing,
    known_secret_values,
    redact,
    redact_text,
    substitute_secrets,
)
from treadle.modules.worker._ssrf import Guard, Resolver, SsrfBlocked, system_resolver
from treadle.observability import Telemetry, record_http_status

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})

# Our errors and httpx's, mapped once: (exception class, ErrorInfo type, retryable).
# Order matters: the first class that matches wins (a ConnectTimeout is a timeout).
_ERRORS: tuple[tuple[type[BaseException], str, bool], ...] = (
    (SecretMissing, "SecretMissing", False),
    (HttpRequestInvalid, "HttpRequestInvalid", False),
    (SsrfBlocked, "SsrfBlocked", False),
    (CircuitOpen, "CircuitOpen", True),
    (HttpResponseTooLarge, "HttpResponseTooLarge", False),
    (HttpRedirectRefused, "HttpRedirectRefused", False),
    (httpx.TooManyRedirects, "HttpTooManyRedirects", False),
    (httpx.InvalidURL, "HttpRequestInvalid", False),
    (httpx.UnsupportedProtocol, "HttpRequestInvalid", False),
    (httpx.LocalProtocolError, "HttpRequestInvalid", False),
    (httpx.TimeoutException, "HttpTimeout", True),
    (httpx.ConnectError, "HttpConnectError", True),
    (OSError, "HttpConnectError", True),  # the resolver: unknown host, no network
    (httpx.TransportError, "HttpTransportError", True),
)
_MAPPED = tuple(kind for kind, _, _ in _ERRORS)


@dataclass(frozen=True, kw_only=True)
class _Answer:
    status: int
    output: dict[str, Any]
    location: str | None


class HttpExecutor:
    """Runs `http` attempts for one worker, over one shared, lazily opened httpx client."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        environ: Mapping[str, str] | None = None,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.monotonic,
        breaker_listener: StateListener | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._settings = settings
        self._environ = os.environ if environ is None else environ
        self._guard = Guard(settings.allow, resolver)
        self._pins = Pins()
        self._breakers = CircuitBreakers(
            settings.breaker_failures,
            settings.breaker_cooldown_seconds,
            clock=clock,
            listener=breaker_listener,
        )
        self._telemetry = telemetry
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(
        cls, settings: HttpSettings, telemetry: Telemetry | None = None
    ) -> HttpExecutor:
        """A worker's executor; with telemetry, a gauge shows each host's circuit state.

        Build one per metrics registry: the gauge registers itself once.
        """
        listener = breaker_gauge(telemetry.metrics.registry) if telemetry is not None else None
        return cls(settings, breaker_listener=listener, telemetry=telemetry)

    def known_secrets(self) -> list[str]:
        """The values of this worker's secret variables (`http.secret_prefix`)."""
        return known_secret_values(self._environ, self._settings.secret_prefix)

    @property
    def breakers(self) -> CircuitBreakers:
        """The per-host circuits (for tests and diagnostics)."""
        return self._breakers

    async def aclose(self) -> None:
        """Close the shared client's connections."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def run(self, request: Any) -> dict[str, Any] | ErrorInfo:
        """The output of one attempt at `request` (the rendered dict), or why it failed."""
        secrets: list[str] = []
        where = ""
        try:
            if not isinstance(request, Mapping):
                raise HttpRequestInvalid("the request must be an object")
            resolved, secrets = substitute_secrets(
                request, self._environ, self._settings.secret_prefix
            )
            call = parse_call(resolved, self._settings.default_timeout)
            shown_url = str(request.get("url"))  # references, not values: safe to show
            where = f"{call.method} {shown_url}: "
            answer = await self._follow(call, shown_url, secrets)
        except _MAPPED as exc:
            return _error_info(exc, where, secrets)
        # Redacted before the error message quotes (and cuts) the body: a value cut in
        # half would no longer be found.
        output: dict[str, Any] = redact(answer.output, secrets)
        if not call.accepts(answer.status):
            return _redacted(status_error(call, shown_url, output), secrets)
        return output

    async def _follow(self, call: HttpCall, shown_url: str, secrets: list[str]) -> _Answer:
        url = (
            httpx.URL(call.url).copy_merge_params(call.query) if call.query else httpx.URL(call.url)
        )
        method, headers, body = call.method, dict(call.headers), call.body
        for _ in range(self._settings.max_redirects + 1):
            answer = await self._send(
                method=method, url=url, headers=headers, body=body, call=call, shown_url=shown_url
            )
            if not self._should_follow(answer, call):
                return answer
            assert answer.location is not None
            target = _redirect_target(url, answer.location)
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), {}
                headers = _without_body_headers(headers)
            if _origin(target) != _origin(url):
                if body:
                    raise HttpRedirectRefused(method, answer.status, _origin_text(target))
                headers = _without_credentials(headers, secrets)
            url, shown_url = target, redact_text(str(target), secrets)
        raise httpx.TooManyRedirects(f"more than {self._settings.max_redirects} redirects")

    def _should_follow(self, answer: _Answer, call: HttpCall) -> bool:
        return (
            self._settings.follow_redirects
            and answer.status in _REDIRECTS
            and answer.location is not None
            and not (call.expect and answer.status in call.expect)
        )

    async def _send(
        self,
        *,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        body: dict[str, Any],
        call: HttpCall,
        shown_url: str,
    ) -> _Answer:
        port = url.port or (443 if url.scheme == "https" else 80)
        with self._breakers.call(f"{url.host}:{port}") as breaker:
            address = await self._guard.vet(url.scheme, url.host, port)
            self._pins.pin(url.host, port, address)
            timeout = httpx.Timeout(call.timeout, connect=min(call.timeout, self._connect_timeout))
            client = self._client_now()
            sent_headers = dict(headers)
            with self._span(method, shown_url, sent_headers) as record_status:
                request = _build_request(
                    client, method, url, headers=sent_headers, timeout=timeout, body=body
                )
                try:
                    answer = await self._exchange(client, request, method)
                except httpx.TransportError:
                    breaker.failed()
                    raise
                record_status(answer.status)
            if answer.status >= 500:
                breaker.failed()
            else:
                breaker.succeeded()
            return answer

    @property
    def _connect_timeout(self) -> float:
        return self._settings.connect_timeout

    async def _exchange(
        self, client: httpx.AsyncClient, request: httpx.Request, method: str
    ) -> _Answer:
        response = await client.send(request, stream=True)
        try:
            raw = b"" if method == "HEAD" else await self._read_capped(response)
        finally:
            await response.aclose()
        output = shape_output(
            response.status_code, response.headers.multi_items(), raw, response.encoding
        )
        return _Answer(
            status=response.status_code, output=output, location=response.headers.get("location")
        )

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self._settings.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpResponseTooLarge(limit)
        body = bytearray()
        # Decoded bytes are counted, so a small gzip bomb is stopped too.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise HttpResponseTooLarge(limit)
        return bytes(body)

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self._settings.max_connections,
                max_keepalive_connections=self._settings.max_keepalive_connections,
            )
            self._client = httpx.AsyncClient(
                transport=pinned_transport(self._pins, limits),
                follow_redirects=False,  # _follow does it, through the guard
                trust_env=False,
                # Shared by every run: a cookie set for one must never reach another.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    @contextlib.contextmanager
    def _span(
        self, method: str, shown_url: str, headers: MutableMapping[str, str]
    ) -> Iterator[Callable[[int], None]]:
        # Telemetry is optional (a bare worker in tests has none); the span gets the URL
        # with secret references, never the values.
        if self._telemetry is None:
            yield lambda _status: None
            return
        with self._telemetry.http_call(method, shown_url, headers) as span:
            yield lambda status: record_http_status(span, status)


def _redirect_target(url: httpx.URL, location: str) -> httpx.URL:
    try:
        target = url.join(location)
    except (httpx.InvalidURL, ValueError) as exc:
        raise HttpRequestInvalid(f"the redirect location is not a valid URL: {exc}") from None
    return checked_url(target, "the redirect location")


def _build_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    *,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    body: dict[str, Any],
) -> httpx.Request:
    # parse_call checks what it can; anything else httpx refuses is still the request's
    # fault, never a worker error.
    try:
        return client.build_request(method, url, headers=headers, timeout=timeout, **body)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise HttpRequestInvalid(f"httpx cannot build the request: {exc}") from None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _without_body_headers(headers: dict[str, str]) -> dict[str, str]:
    # The redirect turned the request into a GET: what described the body goes with it.
    return {name: v for name, v in headers.items() if name.lower() not in _BODY_HEADERS}


def _without_credentials(headers: dict[str, str], secrets: list[str]) -> dict[str, str]:
    # Credentials are for the origin the definition named, not wherever it redirects.
    return {
        name: value
        for name, value in headers.items()
        if name.lower() not in _CREDENTIAL_HEADERS and redact_text(value, secrets) == value
    }


def _error_info(exc: BaseException, where: str, secrets: list[str]) -> ErrorInfo:
    for kind, name, retryable in _ERRORS:
        if isinstance(exc, kind):
            message = where + (str(exc) or type(exc).__name__)
            return _redacted(ErrorInfo(type=name, message=message, retryable=retryable), secrets)
    raise exc  # pragma: no cover - only mapped exceptions are caught


def _redacted(info: ErrorInfo, secrets: list[str]) -> ErrorInfo:
    if not secrets:
        return info
    return ErrorInfo(
        type=info.type, message=redact_text(info.message, secrets), retryable=info.retryable
    )
