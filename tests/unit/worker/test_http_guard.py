"""The SSRF guard's address classification and allowlist (no connection is ever made)."""

from __future__ import annotations

import ipaddress

import pytest

from treadle.modules.worker._ssrf import AllowlistInvalid, Guard, SsrfBlocked, classify


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::", "loopback"),
    ],
)
def test_internal_addresses_are_classified(address: str, reason: str) -> None:
    """Loopback, private, link-local, unspecified, multicast, reserved, and IPv4 inside
    IPv6 (mapped, NAT64, 6to4) are all internal, each with its reason."""
    found = classify(ipaddress.ip_address(address))
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    """Globally routable addresses have no reason to be refused."""
    assert classify(ipaddress.ip_address(address)) is None


def test_allowlist_cidr_covers_plain_and_mapped_addresses() -> None:
    """An allowlisted CIDR lets its addresses through, also written as IPv4-mapped IPv6."""
    guard = Guard(["127.0.0.1/32", "10.0.0.0/8"])
    assert guard.refusal("x", ipaddress.ip_address("127.0.0.1")) is None
    assert guard.refusal("x", ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert guard.refusal("x", ipaddress.ip_address("10.9.9.9")) is None
    assert guard.refusal("x", ipaddress.ip_address("127.0.0.2")) is not None
    assert guard.refusal("x", ipaddress.ip_address("::1")) is not None


def test_allowlist_host_name_covers_whatever_it_resolves_to() -> None:
    """An allowlisted host name (any case, trailing dot) may resolve to internal addresses."""
    guard = Guard(["Internal.Example"])
    assert guard.refusal("internal.example.", ipaddress.ip_address("10.0.0.5")) is None
    assert guard.refusal("other.example", ipaddress.ip_address("10.0.0.5")) is not None


def test_a_bad_allowlist_entry_is_a_clear_error() -> None:
    """An entry that is neither a CIDR nor a host name names itself in the error."""
    with pytest.raises(AllowlistInvalid, match=r"10\.0\.0\.0/33"):
        Guard(["10.0.0.0/33"])


def _resolver(*addresses: str):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.anyio
async def test_any_internal_answer_refuses_the_host() -> None:
    """A host resolving to one public and one private address is refused as a whole."""
    guard = Guard([], _resolver("93.184.216.34", "10.0.0.1"))
    with pytest.raises(SsrfBlocked, match=r"10\.0\.0\.1 is private"):
        await guard.vet("https", "mixed.example", 443)


@pytest.mark.anyio
async def test_the_vetted_address_is_returned_for_pinning() -> None:
    """The guard hands back the address to connect to (scope ids dropped)."""
    guard = Guard([], _resolver("2606:4700:4700::1111", "1.1.1.1"))
    assert await guard.vet("http", "public.example", 80) == "2606:4700:4700::1111"


@pytest.mark.anyio
async def test_only_http_and_https_schemes_are_allowed() -> None:
    """Another scheme is refused before any resolution."""
    resolver = _resolver("1.1.1.1")
    guard = Guard([], resolver)
    with pytest.raises(SsrfBlocked, match="scheme 'ftp'"):
        await guard.vet("ftp", "public.example", 21)
    assert resolver.calls == []
