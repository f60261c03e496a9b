"""One `ssl.SSLContext` from a `TlsSettings` section, shared by the database and brokers."""

from __future__ import annotations

import ssl

from treadle.config import ConfigError, TlsSettings


def ssl_context(tls: TlsSettings, key: str) -> ssl.SSLContext | None:
    """The context `tls` describes, or None when TLS is off; `key` names the section.

    A missing or unreadable file fails here, at start-up, naming the setting, rather
    than at the first connection.
    """
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}.ca_file", f"cannot load the CA file ({exc})") from None
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            reason = f"cannot load the client certificate or key ({exc})"
            raise ConfigError(f"{key}.cert_file", reason) from None
    # check_hostname must be cleared before verification can be turned off.
    context.check_hostname = tls.verify and tls.check_hostname
    if not tls.verify:
        context.verify_mode = ssl.CERT_NONE
    return context
