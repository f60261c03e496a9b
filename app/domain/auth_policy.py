"""When API keys are required, and when `treadle serve` refuses to start without them.

Pure decisions over the auth settings and a count of active keys, shared by the API's guard and
by `serve`; no litestar here, so a worker-only process never loads it.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol


class AuthChoice(Protocol):
    """What `serve_refusal` reads of the auth settings (`treadle.config.AuthSettings` has it)."""

    @property
    def mode(self) -> str: ...

    @property
    def allow_insecure(self) -> bool: ...


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (`0.0.0.0` does not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def keys_required(
    mode: str, *, loopback: bool, active_keys: int, allow_insecure: bool, known_keys: int = 0
) -> bool:
    """Whether requests must carry a key (see `AuthSettings.mode`).

    `known_keys` counts every key ever created, revoked ones too: once keys were in use,
    revoking the last one leaves the API locked instead of silently open again; opening
    it takes a deliberate `auth.mode = "off"`.
    """
    if mode == "off":
        return False
    if mode == "keys" or active_keys > 0 or known_keys > 0:
        return True
    return not loopback and not allow_insecure


LOCKED = (
    "every API key has been revoked, so the API stays locked: create a key with "
    '`treadle keys create NAME --scope admin`, or set auth.mode = "off" '
    "(TREADLE_AUTH__MODE=off) to serve without keys on loopback"
)
"""What a request hears once the last key is revoked (and `treadle keys revoke` says)."""


def serve_refusal(auth: AuthChoice, *, host: str, active_keys: int) -> str | None:
    """Why the API must not listen on `host` as configured, or None when it may."""
    if is_loopback(host) or auth.allow_insecure:
        return None
    if auth.mode == "off":
        return (
            f"auth.mode is off and {host} is not a loopback address: anyone who can reach "
            "it could drive every workflow; bind 127.0.0.1, turn auth on, or pass "
            "--insecure-no-auth if a proxy in front authenticates"
        )
    if active_keys == 0:
        return (
            f"no API keys exist and {host} is not a loopback address; create one with "
            "`treadle keys create NAME --scope admin`, give a first one as "
            "auth.bootstrap_key_file (TREADLE_AUTH__BOOTSTRAP_KEY_FILE, e.g. a mounted "
            "Secret), or pass --insecure-no-auth if a proxy in front authenticates"
        )
    return None
