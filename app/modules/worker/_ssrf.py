"""The SSRF guard: an `http` task may only reach public addresses, unless allowlisted.

The host is resolved here, every address it resolves to is checked, and the caller
connects to the vetted address itself (pinned), so a DNS answer that changes between
the check and the connection (rebinding) cannot smuggle an internal address in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio

from treadle.domain.errors import TreadleError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the IP addresses it resolves to, as text."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
ALLOWED_SCHEMES = frozenset({"http", "https"})


class SsrfBlocked(TreadleError):
    """The guard refused a request's target; nothing was sent."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"refused to call {host!r}: {reason}")


class AllowlistInvalid(TreadleError):
    """An entry of `http.allow` is neither a CIDR nor a host name."""

    def __init__(self, entry: str) -> None:
        self.entry = entry
        super().__init__(f"config http.allow: {entry!r} is not a CIDR or a host name")


def classify(address: IPAddress) -> str | None:
    """Why `address` is internal ("loopback", "private", ...), or None if it is public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = classify(embedded)
        return None if reason is None else f"{reason} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    # IPv4 hidden in IPv6: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4.
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system resolver (anyio runs getaddrinfo off the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Guard:
    """Checks targets against the internal ranges and the allowlist (CIDRs, host names)."""

    def __init__(self, allow: Sequence[str] = (), resolver: Resolver = system_resolver) -> None:
        self._networks: list[IPNetwork] = []
        self._hosts: set[str] = set()
        for entry in allow:
            self._add(entry.strip())
        self._resolver = resolver

    def _add(self, entry: str) -> None:
        try:
            self._networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if not entry or "/" in entry or any(c.isspace() for c in entry):
                raise AllowlistInvalid(entry) from None
            self._hosts.add(entry.lower().rstrip("."))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why a connection to `address` (resolved from `host`) is refused, or None."""
        if host.lower().rstrip(".") in self._hosts:
            return None
        reason = classify(address)
        if reason is None:
            return None
        candidates = [address]
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        if any(a in net for a in candidates for net in self._networks if a.version == net.version):
            return None
        return f"{address} is {reason} and not in http.allow"

    async def vet(self, scheme: str, host: str, port: int) -> str:
        """The address to connect to for `host`; raises SsrfBlocked if any is refused."""
        if scheme not in ALLOWED_SCHEMES:
            raise SsrfBlocked(host, f"scheme {scheme!r} is not http or https")
        if not host:
            raise SsrfBlocked(host, "the URL has no host")
        addresses = await self._resolver(host, port)
        if not addresses:
            raise SsrfBlocked(host, "the host resolves to no address")
        for text in addresses:
            # A scoped IPv6 address (fe80::1%eth0) is link-local anyway; drop the scope.
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.refusal(host, address)
            if reason is not None:
                raise SsrfBlocked(host, reason)
        return addresses[0].split("%", 1)[0]
