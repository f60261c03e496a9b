"""How the CLI shows a run whose large values the server elided (`treadle run value` prints one)."""

from __future__ import annotations

from typing import Any

import msgspec

from treadle.api_types import RunBody, elided, elided_path

_FIELDS = ("input", "output")


def shown_run(run: RunBody) -> dict[str, Any]:
    """The run as JSON-ready builtins, each elided value a line saying how to print it:
    `<elided 52,428,800 bytes: treadle run value RUN tasks/x/output>`."""
    body: dict[str, Any] = msgspec.to_builtins(run)
    for holder in (body, *body["tasks"]):
        for field in _FIELDS:
            holder[field] = _shown(run.id, holder[field])
    return body


def _shown(run_id: str, value: Any) -> Any:
    marker = elided(value)
    if marker is None:
        return value
    command = f"treadle run value {run_id} {elided_path(marker)}"
    return f"<elided {marker.bytes:,} bytes: {command}>"
