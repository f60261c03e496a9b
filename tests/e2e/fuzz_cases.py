"""What the API fuzz adds to the cases schemathesis generates from the OpenAPI document.

Generated values alone rarely name a run that exists or reach a column's size, so each
case may be twisted twice before it is sent: `known` puts in the ids, names and cursors
of what `seed` created (so the handlers behind the 404s run), and `edge` puts one value
at an edge into one slot (path, query, header or body): a string at or just past a
column size, a NUL, a date-time that overflows once taken to UTC, a number past 64 bits,
JSON nested past the depth limit. The `Tally` counts what was sent, so the test can
assert the budget and the mix did not silently shrink.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.transport.serialization import quote_all

from treadle.domain.limits import ID_CHARS, KEY_CHARS, NAME_CHARS, TASK_ID_CHARS

LONG = NAME_CHARS
"""A string at least this long counts as long (the longest column most names get)."""
_LENGTHS = sorted(
    {n + d for n in (ID_CHARS, TASK_ID_CHARS, NAME_CHARS, KEY_CHARS) for d in (0, 1)} | {1000}
)
_LONG_BODY_LENGTHS = [*_LENGTHS, 4000]
# Strings in a URL or header stay under about 12 KB percent-encoded: the HTTP server's
# request-line and header limits would otherwise answer before Treadle does.
# No "/" on its own: the ASGI server decodes %2F before routing, so a value of only slashes
# collapses into the parent route (`/v1/workflows/%2F%2F` lists workflows).
_URL_SEEDS = ["a", "é", "😀", "\x00", "a\x00", "%", "a/", " ", "..", "\u2028", "ÿ"]
_HEADER_SEEDS = ["a", "k-", "%", "x y", "/"]  # no leading space: requests refuses it
_DATES = [
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "2025-01-31T12:00:00",
    "+275760-09-13T00:00:00Z",
    "2025-01-31T12:00:00+99:00",
]
_NUMBERS_AS_TEXT = ["0", "-1", "2147483648", "9223372036854775808", "1e309", "nan", "inf", "-0"]
_NUMBERS: list[Any] = [0, -1, 2**31, 2**63, 2**64, -(2**63) - 1, 1e308, -0.0, 5e-324, 0.5]


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


_JSON_EDGES: list[Any] = [
    *_NUMBERS,
    True,
    None,
    "",
    [],
    {},
    "${ input }",
    "${ nope( }",
    "1h",
    "-1s",
    "0 0 31 2 *",
    "Mars/Olympus",
    _nested(63),
    _nested(65),
    _nested(200),
]


def _repeated(seeds: list[str], lengths: list[int]) -> st.SearchStrategy[str]:
    """A long string built cheaply (Hypothesis draws a seed and a length, not 4,000 chars)."""
    return st.builds(
        lambda seed, n: (seed * n)[:n], st.sampled_from(seeds), st.sampled_from(lengths)
    )


URL_TEXT = st.one_of(
    _repeated(_URL_SEEDS, _LENGTHS), st.sampled_from([*_DATES, *_NUMBERS_AS_TEXT, ""])
)
PATH_TEXT = URL_TEXT.filter(bool)
"""An empty path segment would route elsewhere (`/v1/workflows/` lists workflows)."""
HEADER_TEXT = st.one_of(_repeated(_HEADER_SEEDS, _LENGTHS), st.sampled_from(["", "1", "x\ty"]))
JSON_VALUE = st.one_of(
    _repeated(_URL_SEEDS, _LONG_BODY_LENGTHS), st.sampled_from(_JSON_EDGES + _DATES)
)


# --- what the server holds before the fuzz -------------------------------------------

GATE = {
    "name": "fz-gate",
    "signals": {"names": ["poke"]},
    "tasks": {"wait": {"type": "signal", "signal": "go", "timeout": "1h"}},
}
ECHO = {"name": "fz-echo", "tasks": {"echo": {"handler": "e2e.echo", "input": "${ input }"}}}
BOOM = {
    "name": "fz-boom",
    "tasks": {
        "boom": {"handler": "e2e.flaky", "input": {"fail_times": 99}, "retry": {"max_attempts": 1}}
    },
}
FAN = {
    "name": "fz-fan",
    "tasks": {
        "fan": {"type": "map", "items": "${ input }", "task": {"handler": "e2e.echo"}},
    },
}
SCHEDULE = {"name": "fz-hourly", "workflow": "fz-echo", "interval": "1h", "paused": True}


@dataclass
class Known:
    """Ids, names and cursors of what exists on the server under fuzz."""

    run_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=lambda: ["go", "poke", "nope"])


def seed(http: httpx.Client) -> Known:
    """Register workflows, start runs of each kind and a schedule; return what they are."""
    known = Known()
    for definition in (GATE, ECHO, BOOM, FAN):
        _ok(http.post("/v1/workflows", json=definition))
        known.workflows.append(str(definition["name"]))
    starts: list[tuple[str, Any, dict[str, str]]] = [
        ("fz-gate", None, {}),
        ("fz-gate", None, {"Idempotency-Key": "fz-key"}),
        ("fz-echo", {"x": 1}, {}),
        ("fz-boom", None, {}),
        ("fz-fan", [1, 2, 3], {}),
    ]
    for workflow, input, headers in starts:
        run = _ok(
            http.post("/v1/runs", json={"workflow": workflow, "input": input}, headers=headers)
        )
        known.run_ids.append(run["id"])
    known.idempotency_keys.append("fz-key")
    known.task_ids.extend(["wait", "echo", "boom", "fan", "fan[0]"])
    for definition in EDGE_DEFINITIONS:  # so the corpus can start runs of those that pass
        response = http.post("/v1/workflows", json=definition)
        assert response.status_code < 500, (definition, response.text)
    schedule = _ok(http.post("/v1/schedules", json=SCHEDULE))
    known.schedule_ids.append(schedule["id"])
    for path in ("/v1/runs", "/v1/workflows", f"/v1/runs/{known.run_ids[0]}/events"):
        cursor = _ok(http.get(path, params={"limit": 1})).get("next_cursor")
        if cursor:
            known.cursors.append(cursor)
    return known


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, (response.request.url, response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


# --- a corpus of edge requests, sent as they are in every positive pass ---------------

_HUGE = "99999999999999d"
_H = {"handler": "e2e.echo"}
_EDGE_TASKS: list[dict[str, Any]] = [
    {**_H, "timeout": _HUGE},
    {**_H, "timeout": 1e308},
    {**_H, "heartbeat_timeout": _HUGE, "schedule_to_start_timeout": _HUGE},
    {
        "handler": "e2e.flaky",
        "input": {"fail_times": 1},
        "retry": {"max_attempts": 3, "initial_interval": _HUGE},
    },
    {
        "handler": "e2e.flaky",
        "input": {"fail_times": 1},
        "retry": {"max_attempts": 2, "backoff": 1e308, "max_interval": _HUGE},
    },
    {"type": "sleep", "duration": _HUGE},
    {"type": "sleep", "until": "9999-12-31T23:59:59-14:00"},
    {"type": "sleep", "until": "9999-12-31T23:59:59+14:00"},
    {"type": "sleep", "until": "0001-01-01T00:00:00+14:00"},
    {"type": "signal", "signal": "go", "timeout": _HUGE},
    {"type": "map", "items": "${ input.items }", "concurrency": 2**63, "task": _H},
    {"type": "workflow", "workflow": "fz-echo", "version": 2**40},
    {**_H, "when": "${ `1e400` }", "input": 2**64},
    {**_H, "input": {"deep": _nested(40), "nul": "\x00", "big": -(2**64)}},
    {"handler": "e\x00"},
]
_EDGE_SCHEMAS: list[Any] = [
    {"$ref": "#"},
    {"type": "string", "pattern": "("},
    {"$ref": "http://127.0.0.1:9/schema.json"},
    {"properties": {"a": {"$ref": "#/properties/a"}}},
    {"properties": {"a": {"$ref": "#/$defs/nope"}}},
    {"type": "string", "minLength": 2**70},
]
EDGE_DEFINITIONS: list[dict[str, Any]] = [
    *({"name": f"fz-edge-task-{n}", "tasks": {"t": task}} for n, task in enumerate(_EDGE_TASKS)),
    *(
        {"name": f"fz-edge-schema-{n}", "input_schema": schema, "tasks": {"t": _H}}
        for n, schema in enumerate(_EDGE_SCHEMAS)
    ),
    {
        "name": "fz-edge-timeout",
        "timeout": _HUGE,
        "output": "${ to_number('1e400') }",
        "tasks": {"t": _H},
    },
    {"name": "fz-edge-signals", "signals": {"names": ["s" * 201]}, "tasks": {"t": _H}},
    {"name": "fz-edge-" + "😀" * 200, "tasks": {"t": _H}},
    {"name": "fz-edge-task-id", "tasks": {"😀" * 189: _H}},
]
_EDGE_INPUTS: list[Any] = [
    {"a": 1, "items": [1, 2]},
    {"a": {"a": {"a": 1}}},
    "x",
    2**64,
    {"\x00": "\x00", "items": []},
]
_HOURLY = {"workflow": "fz-echo", "interval": "1h", "paused": True}
_LEAP_MONDAYS = {"workflow": "fz-echo", "cron": "0 0 29 2 1", "paused": True}
_EDGE_SCHEDULES: list[dict[str, Any]] = [
    {**_HOURLY, "start_at": "9999-12-31T23:59:59-14:00"},
    {**_HOURLY, "start_at": "9999-12-31T23:59:59Z"},
    {**_HOURLY, "start_at": "0001-01-01T00:00:00+14:00"},
    {**_HOURLY, "interval": _HUGE},
    {**_HOURLY, "interval": 1e308},
    {**_HOURLY, "interval": 2**64},
    {**_HOURLY, "interval": 5e-324},
    {**_LEAP_MONDAYS, "start_at": "9999-12-31T00:00:00Z"},
    {**_LEAP_MONDAYS, "timezone": "Etc/GMT-14", "start_at": "8999-12-31T23:59:59+14:00"},
    {**_LEAP_MONDAYS, "timezone": "../../etc/passwd"},
    {**_LEAP_MONDAYS, "cron": "*/0 * * * *"},
    {**_HOURLY, "version": 2**40, "input": 2**64},
]
_FORGED_CURSORS = [
    "=",
    "!!!",
    "a" * 2000,
    "W10",
    "e30",
    "WyJ4Il0",
    "WzEsMl0",
    "WzJlMzA4XQ",
    "bnVsbA",
]
_EDGE_QUERIES: list[dict[str, Any]] = [
    {"created_after": "9999-12-31T23:59:59-14:00"},
    {"created_after": "0001-01-01T00:00:00+14:00"},
    {"created_after": "9999-12-31T23:59:59.999999Z"},
    {"limit": 2**64},
    *({"cursor": cursor} for cursor in _FORGED_CURSORS),
]


def corpus(operation: Any, known: Known) -> list[dict[str, Any]]:
    """Edge requests for `operation` (`APIOperation.Case` keyword arguments)."""
    method, path = operation.method.upper(), operation.path
    json_body = {"media_type": "application/json"}
    bodies: list[Any] = []
    params: list[dict[str, Any]] = []
    if (method, path) == ("POST", "/v1/workflows"):
        bodies = EDGE_DEFINITIONS
    elif (method, path) == ("POST", "/v1/runs"):
        names = [d["name"] for d in EDGE_DEFINITIONS] + known.workflows
        bodies = [{"workflow": n, "input": i} for n in names for i in _EDGE_INPUTS[:2]]
        bodies += [{"workflow": "fz-edge-task-0", "input": i} for i in _EDGE_INPUTS]
    elif (method, path) == ("POST", "/v1/schedules"):
        bodies = [{**s, "name": f"fz-edge-{n}"} for n, s in enumerate(_EDGE_SCHEDULES)]
    elif path == "/v1/runs/{run_id}/signals/{name}":
        run_path = {"run_id": known.run_ids[1], "name": "poke"}
        return [{"path_parameters": run_path, "body": b, **json_body} for b in _EDGE_INPUTS]
    elif method == "GET" and path in (
        "/v1/runs",
        "/v1/runs/counts",
        "/v1/workflows",
        "/v1/schedules",
    ):
        declared = {p["name"] for p in operation.definition.raw.get("parameters", [])}
        params = [q for q in _EDGE_QUERIES if set(q) <= declared]
    elif (method, path) == ("GET", "/v1/runs/{run_id}/events"):
        params = [{"cursor": cursor} for cursor in _FORGED_CURSORS]
        return [{"path_parameters": {"run_id": known.run_ids[0]}, "query": q} for q in params]
    elif (method, path) == ("GET", "/v1/runs/{run_id}"):
        waits = ["nan", "inf", "-0", "1e-320", "0.01"]
        return [
            {"path_parameters": {"run_id": known.run_ids[1]}, "query": {"wait": w}} for w in waits
        ]
    return [{"body": b, **json_body} for b in bodies] + [{"query": q} for q in params]


# --- twisting a generated case --------------------------------------------------------

_WAIT_MOST = 0.05
"""A long poll on a run that exists is cut to this, so the fuzz never waits a minute."""


@st.composite
def twisted(draw: st.DrawFn, cases: st.SearchStrategy[Any], known: Known) -> Any:
    """A generated case, perhaps with known ids put in, perhaps with one edge value."""
    case = draw(cases)
    if draw(st.booleans()):
        _put_known(draw, case, known)
    if draw(st.booleans()):
        _put_edge(draw, case)
    wait = case.query.get("wait") if isinstance(case.query, dict) else None
    if isinstance(wait, int | float) and wait > _WAIT_MOST:
        case.query["wait"] = _WAIT_MOST
    return case


def _put_known(draw: st.DrawFn, case: Any, known: Known) -> None:
    signal_route = "/signals/" in case.path
    choices: Mapping[str, list[Any]] = {
        "run_id": known.run_ids,
        "task_id": known.task_ids,
        "name": known.signals if signal_route else known.workflows,
        "version": [1, 2],
        "schedule_id": known.schedule_ids,
    }
    for name in list(case.path_parameters or {}):
        if name in choices:
            _put_path(case, name, draw(st.sampled_from(choices[name])))
    query_choices = {
        "workflow": known.workflows,
        "cursor": known.cursors,
        "idempotency_key": known.idempotency_keys,
    }
    for name in list(case.query or {}):
        if query_choices.get(name):
            case.query[name] = draw(st.sampled_from(query_choices[name]))
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = draw(st.sampled_from(known.idempotency_keys))
    _put_known_body(draw, case, known)


def _put_known_body(draw: st.DrawFn, case: Any, known: Known) -> None:
    """A body with real names in it; for the definition and schedule routes, a real one
    with one of its fields replaced by the generated body."""
    body = case.body
    if not _is_json(body):
        return  # a negative case's raw bytes: leave them as generated
    if case.method == "POST" and case.path == "/v1/runs" and isinstance(body, dict):
        body["workflow"] = draw(st.sampled_from(known.workflows))
    elif case.method == "POST" and case.path in ("/v1/workflows", "/v1/schedules"):
        template = dict(ECHO if case.path == "/v1/workflows" else SCHEDULE)
        name = draw(st.sampled_from([*sorted(template), "input_schema", "output", "start_at"]))
        template[name] = {} if body is NOT_SET else body
        if name != "name":
            template["name"] = f"fz-{draw(st.integers(0, 50))}"
        case.body = template


def _put_path(case: Any, name: str, value: Any) -> None:
    """Path values are kept percent-encoded (as schemathesis generates them)."""
    case.path_parameters[name] = quote_all({name: value})[name]


def _is_json(body: Any) -> bool:
    return body is NOT_SET or isinstance(body, dict | list | str | int | float | bool | None)


def _put_edge(draw: st.DrawFn, case: Any) -> None:
    """One edge value in one slot the operation has (declared or generated)."""
    slots = [("path", name) for name in case.path_parameters or {}]
    for parameter in case.operation.definition.raw.get("parameters", []):
        where = parameter.get("in")
        if where in ("query", "header"):
            slots.append((where, parameter["name"]))
    if isinstance(case.body, dict):
        slots.extend(("body", key) for key in case.body)
        slots.append(("body", draw(st.sampled_from(["name", "workflow", "input", "tasks"]))))
    elif case.body is not NOT_SET and _is_json(case.body):
        slots.append(("body", None))
    if not slots:
        return
    where, name = draw(st.sampled_from(slots))
    if where == "path":
        _put_path(case, name, draw(PATH_TEXT))
    elif where == "query":
        if case.query is None:
            case.query = {}
        case.query[name] = draw(URL_TEXT)
    elif where == "header":
        if case.headers is None:
            case.headers = {}
        case.headers[name] = draw(HEADER_TEXT)
    elif name is None:
        case.body = draw(JSON_VALUE)
    else:
        case.body[name] = draw(JSON_VALUE)


# --- counting what was sent -----------------------------------------------------------


@dataclass
class Tally:
    """How many requests were sent, and how many carried a NUL or a long string."""

    calls: int = 0
    """Generated cases sent."""
    corpus: int = 0
    """Corpus cases sent."""
    with_nul: int = 0
    with_long_string: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, case: Any, status: int, *, generated: bool = True) -> None:
        """Count one sent case and its answer."""
        if not generated:
            self.corpus += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            return
        self.calls += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        path = {k: unquote(str(v)) for k, v in (case.path_parameters or {}).items()}
        texts = list(_strings(path, case.query, case.headers, case.body))
        self.with_nul += any("\x00" in text for text in texts)
        self.with_long_string += any(len(text) >= LONG for text in texts)

    def __str__(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.calls} generated requests ({self.with_nul} with a NUL, "
            f"{self.with_long_string} with a string of {LONG}+ characters), "
            f"{self.corpus} from the corpus; {statuses}"
        )


def _strings(*values: Any) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield from _strings(key, item)
        elif isinstance(value, list | tuple):
            yield from _strings(*value)
