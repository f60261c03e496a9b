"""`python -m treadle.serving.healthcheck`: exit 0 when this machine's `/healthz` answers.

The container image's HEALTHCHECK. It reads the settings as `serve` does (the defaults,
`TREADLE_CONFIG`, `TREADLE_*`), so the probe follows the configured port instead of
assuming 8000; a port given only as `serve --port` is invisible to it (set
`TREADLE_API__PORT` instead). Standard library only: it runs every few seconds.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from treadle.config import ConfigError, Settings, load_settings

TIMEOUT_SECONDS = 2.0
_ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}  # noqa: S104


def healthz_url(settings: Settings) -> str:
    """Where this process's liveness endpoint answers: a wildcard bind is probed on loopback."""
    host = settings.api.host
    host = _ANY_ADDRESS.get(host, f"[{host}]" if ":" in host and "[" not in host else host)
    return f"http://{host}:{settings.api.port}/healthz"


def main() -> int:
    """0 when /healthz answers 2xx, else 1 with the reason on stderr."""
    try:
        url = healthz_url(load_settings())
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)  # noqa: T201 -- a CLI's one line
        return 1
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 -- http:// built above
            return 0 if 200 <= answer.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    sys.exit(main())
