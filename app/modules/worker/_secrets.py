"""Substituting `${ secret.NAME }` in an http request, and redacting the values after.

The value of `secret.NAME` is the worker's environment variable `<prefix>NAME`
(`TREADLE_SECRET_NAME` by default). Only the paths the compiler recorded in the request's
`secrets` list are substituted (treadle.domain.secrets says why); the values then never
leave the call: they are redacted from the output and from every error message.

Every such variable's value is redacted from every failure the worker reports, a
handler's too (its message and traceback), and so from the worker's log line of it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

import msgspec

from treadle.domain.errors import TreadleError
from treadle.domain.secrets import SECRET_REF
from treadle.domain.state import ErrorInfo

REDACTED = "[redacted]"


class SecretMissing(TreadleError):
    """A request references a secret the worker's environment does not define."""

    def __init__(self, name: str, variable: str) -> None:
        self.name = name
        self.variable = variable
        super().__init__(
            f"secret {name!r} is not set on this worker (environment variable {variable})"
        )


def substitute_secrets(
    request: Mapping[str, Any], environ: Mapping[str, str], prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """The request with its secret references replaced, and the values used."""
    out = copy.deepcopy(dict(request))
    paths = out.pop("secrets", None) or []
    used: list[str] = []

    def value_of(name: str) -> str:
        variable = f"{prefix}{name}"
        value = environ.get(variable)
        if value is None:
            raise SecretMissing(name, variable)
        used.append(value)
        return value

    for path in paths if isinstance(paths, list) else []:
        _replace_at(out, path, lambda text: SECRET_REF.sub(lambda m: value_of(m["name"]), text))
    return out, list(dict.fromkeys(v for v in used if v))


def known_secret_values(environ: Mapping[str, str], prefix: str) -> list[str]:
    """The value of every `<prefix>NAME` variable: what no failure may show, whichever
    task (handler or http) quoted it."""
    return sorted({v for k, v in environ.items() if k.startswith(prefix) and v})


def redact_error(info: ErrorInfo, secrets: Sequence[str]) -> ErrorInfo:
    """`info` with every secret value redacted from its message and traceback."""
    if not secrets:
        return info
    traceback = None if info.traceback is None else redact_text(info.traceback, secrets)
    return msgspec.structs.replace(
        info, message=redact_text(info.message, secrets), traceback=traceback
    )


def _replace_at(root: Any, path: Any, change: Any) -> None:
    if not isinstance(path, list) or not path:
        return
    parent = root
    for part in path[:-1]:
        parent = _child(parent, part)
        if parent is None:
            return
    last = path[-1]
    if _child(parent, last) is None or not isinstance(_child(parent, last), str):
        return
    parent[last] = change(parent[last])


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """`value` with every occurrence of a secret, in any string or key, replaced."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {redact_text(str(k), secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


def redact_text(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret value, in each encoded form, replaced by `[redacted]`."""
    for form in _encoded_forms(secrets):
        text = text.replace(form, REDACTED)
    return text


def _encoded_forms(secrets: Sequence[str]) -> list[str]:
    # A server that echoes a request back may quote the value as it arrived in a JSON
    # body (escaped once, or twice when that JSON text is itself a JSON string) or in a
    # query or form (URL-encoded); a value with a quote or a slash is only found in those
    # forms. Longest first, so a form that contains another is replaced whole.
    forms: set[str] = set()
    for secret in secrets:
        once = json.dumps(secret)[1:-1]
        forms |= {
            secret,
            once,
            json.dumps(once)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret),
        }
    return sorted((form for form in forms if form), key=len, reverse=True)
