"""What an API that asks for no key refuses, so a web page in the user's browser cannot
drive it: a `Host` that is not this machine (DNS rebinding) and forgeable writes (CSRF).

With no key required, the only thing standing between a malicious page and the API is
the browser's same-origin policy. A page that rebinds its own name to 127.0.0.1 is
same-origin with the API, but its requests still name the page's host in `Host`, so only
loopback names (and `api.allowed_hosts`) are served. A cross-site page can still *send*
simple requests (a form post, `fetch` in no-cors mode) without reading the answers, so a
state-changing request must carry a JSON content type or `X-Treadle-Request`, neither of
which a cross-site page can set without a CORS preflight this API never grants.
With keys, a page has no key to send, so neither check applies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from treadle.modules.api._errors import CrossSiteRequestRefused, HostNotAllowed

REQUEST_HEADER = "x-treadle-request"
"""The header the CLI, the client and the dashboard send on every request."""
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost"})


def host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port or IPv6 brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def host_allowed(host_header: str, allowed: Collection[str]) -> bool:
    """Whether a request naming `host_header` is for this machine (or a configured name)."""
    name = host_name(host_header)
    if name in _LOOPBACK_NAMES or name in {host_name(a) for a in allowed}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_open_request(
    method: str, headers: dict[str, str], allowed_hosts: Collection[str], *, loopback: bool
) -> None:
    """Raise `HostNotAllowed` or `CrossSiteRequestRefused` for what a web page could forge.

    `headers` has lower-case names. The Host check applies to a loopback listener (the one
    DNS rebinding reaches); a request with no Host at all is no browser's.
    """
    host = headers.get("host")
    if loopback and host is not None and not host_allowed(host, allowed_hosts):
        raise HostNotAllowed(host_name(host))
    if method.upper() not in _WRITES or REQUEST_HEADER in headers:
        return
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return
    raise CrossSiteRequestRefused(media_type)
