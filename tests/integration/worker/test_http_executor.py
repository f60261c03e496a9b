"""The http executor against a real server on 127.0.0.1 (allowlisted unless said)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.worker.echo_server import EchoServer, echo_server
from treadle import TaskContext
from treadle.config import HttpSettings
from treadle.domain.events import DispatchTask, TaskFailed
from treadle.domain.state import ErrorInfo
from treadle.modules.worker import HandlerRegistry
from treadle.modules.worker._breaker import breaker_gauge
from treadle.modules.worker._execute import execute
from treadle.modules.worker._http import HttpExecutor
from treadle.observability import Telemetry

pytestmark = pytest.mark.anyio
LOOPBACK = ["127.0.0.1/32"]
SECRET = "s3cr3t-Value-42"


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """A fresh echo server for this test."""
    with echo_server() as server:
        yield server


def _executor(**settings: Any) -> HttpExecutor:
    settings.setdefault("allow", LOOPBACK)
    return HttpExecutor(HttpSettings(**settings), environ={"TREADLE_SECRET_TOKEN": SECRET})


async def _run(request: dict[str, Any], **settings: Any) -> dict[str, Any] | ErrorInfo:
    executor = _executor(**settings)
    try:
        return await executor.run(request)
    finally:
        await executor.aclose()


async def test_json_query_and_headers_reach_the_server(echo: EchoServer) -> None:
    """Method, query (lists too), headers and a JSON body arrive; the answer is the output."""
    output = await _run(
        {
            "method": "PUT",
            "url": f"{echo.url}/echo?fixed=1",
            "headers": {"X-Trace": "abc"},
            "query": {"q": "v", "n": [1, 2]},
            "json": {"a": [1, "b"]},
        }
    )
    assert not isinstance(output, ErrorInfo), output
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "application/json"
    seen = output["json"]
    assert seen["method"] == "PUT"
    assert seen["query"] == {"fixed": ["1"], "q": ["v"], "n": ["1", "2"]}
    assert seen["headers"]["x-trace"] == "abc"
    assert seen["headers"]["host"] == echo.url.removeprefix("http://")
    assert seen["body"] == '{"a":[1,"b"]}'


async def test_a_form_body_is_url_encoded(echo: EchoServer) -> None:
    """`form` is sent as application/x-www-form-urlencoded."""
    output = await _run({"method": "POST", "url": f"{echo.url}/echo", "form": {"a": 1, "b": "x y"}})
    assert not isinstance(output, ErrorInfo), output
    assert output["json"]["body"] == "a=1&b=x+y"
    assert output["json"]["headers"]["content-type"] == "application/x-www-form-urlencoded"


async def test_text_answers_and_expected_codes(echo: EchoServer) -> None:
    """A text body is `text`; a status listed in `expect` is a success."""
    text = await _run({"url": f"{echo.url}/text"})
    assert not isinstance(text, ErrorInfo)
    assert text["text"] == "plain text ü"
    expected = await _run({"url": f"{echo.url}/status/404", "expect": [404]})
    assert not isinstance(expected, ErrorInfo)
    assert expected == {**expected, "status": 404, "json": {"error": "as asked"}}


async def test_unexpected_codes_fail_retryable_only_for_5xx(echo: EchoServer) -> None:
    """503 is retryable, 404 is not, unless `retry_on` lists it."""
    unavailable = await _run({"url": f"{echo.url}/status/503"})
    missing = await _run({"url": f"{echo.url}/status/404"})
    listed = await _run({"url": f"{echo.url}/status/404", "retry_on": [404]})
    assert isinstance(unavailable, ErrorInfo)
    assert (unavailable.type, unavailable.retryable) == ("HttpStatusError", True)
    assert isinstance(missing, ErrorInfo)
    assert (missing.type, missing.retryable) == ("HttpStatusError", False)
    assert isinstance(listed, ErrorInfo)
    assert listed.retryable is True


async def test_loopback_is_refused_before_any_connection(echo: EchoServer) -> None:
    """Without an allowlist, a loopback target is SsrfBlocked and the server sees nothing."""
    result = await _run({"url": f"{echo.url}/echo"}, allow=[])
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("SsrfBlocked", False)
    assert "127.0.0.1 is loopback" in result.message
    assert echo.received == []


async def test_a_slow_answer_times_out_retryably(echo: EchoServer) -> None:
    """The per-request timeout gives a retryable HttpTimeout."""
    result = await _run({"url": f"{echo.url}/slow?seconds=2", "timeout": 0.2})
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("HttpTimeout", True)


async def test_nothing_listening_is_a_retryable_connect_error() -> None:
    """A refused connection on loopback is HttpConnectError, retryable."""
    with echo_server() as gone:
        url = gone.url
    result = await _run({"url": f"{url}/echo"})
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("HttpConnectError", True)


async def test_a_body_over_the_limit_fails(echo: EchoServer) -> None:
    """The body is read up to max_response_bytes; more is HttpResponseTooLarge."""
    result = await _run({"url": f"{echo.url}/big?bytes=5000"}, max_response_bytes=1000)
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("HttpResponseTooLarge", False)


async def test_redirects_are_answers_unless_followed_through_the_guard(echo: EchoServer) -> None:
    """Off: the 302 is the answer. On: followed, and a refused target is SsrfBlocked."""
    to_echo = f"{echo.url}/redirect?to=/echo"
    answered = await _run({"url": to_echo, "expect": [302]})
    assert not isinstance(answered, ErrorInfo)
    assert answered["status"] == 302
    assert answered["headers"]["location"] == "/echo"
    followed = await _run({"url": to_echo}, follow_redirects=True)
    assert not isinstance(followed, ErrorInfo)
    assert followed["json"]["method"] == "GET"
    port = echo.url.rsplit(":", 1)[1]
    to_v6 = f"{echo.url}/redirect?to=http://[::1]:{port}/echo"
    refused = await _run({"url": to_v6}, follow_redirects=True)
    assert isinstance(refused, ErrorInfo)
    assert refused.type == "SsrfBlocked"


async def test_secrets_are_sent_but_never_returned(echo: EchoServer) -> None:
    """The server gets the value; the output shows [redacted]; data markers stay literal."""
    output = await _run(
        {
            "method": "POST",
            "url": f"{echo.url}/echo",
            "headers": {"Authorization": "Bearer ${ secret.TOKEN }"},
            "json": {"smuggled": "${ secret.TOKEN }"},
            "secrets": [["headers", "Authorization"]],
        }
    )
    assert echo.received[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(output)
    assert not isinstance(output, ErrorInfo)
    assert output["json"]["headers"]["authorization"] == "Bearer [redacted]"
    assert "${ secret.TOKEN }" in output["json"]["body"]


async def test_secrets_are_redacted_from_error_messages(echo: EchoServer) -> None:
    """A secret in the URL does not show in the failure message."""
    result = await _run(
        {"url": f"{echo.url}/status/404?key=${{ secret.TOKEN }}", "secrets": [["url"]]}
    )
    assert isinstance(result, ErrorInfo)
    assert SECRET not in result.message
    assert echo.received[0].query == {"key": [SECRET]}


async def test_a_missing_secret_fails_without_calling(echo: EchoServer) -> None:
    """An unset secret is a non-retryable SecretMissing naming it, and nothing is sent."""
    result = await _run(
        {
            "url": f"{echo.url}/echo",
            "headers": {"A": "${ secret.OTHER }"},
            "secrets": [["headers", "A"]],
        }
    )
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("SecretMissing", False)
    assert "OTHER" in result.message
    assert echo.received == []


async def test_cookies_never_carry_over_between_calls(echo: EchoServer) -> None:
    """The shared client keeps no cookie jar: one run's cookie never reaches another."""
    executor = _executor()
    try:
        await executor.run({"url": f"{echo.url}/echo"})
        await executor.run({"url": f"{echo.url}/echo"})
    finally:
        await executor.aclose()
    assert "Cookie" not in echo.received[1].headers


async def test_the_breaker_opens_and_rejects_without_calling(echo: EchoServer) -> None:
    """After N 5xx in a row further calls fail fast as CircuitOpen and reach nobody."""
    executor = _executor(breaker_failures=2, breaker_cooldown_seconds=60)
    try:
        for _ in range(2):
            await executor.run({"url": f"{echo.url}/status/500"})
        rejected = await executor.run({"url": f"{echo.url}/echo"})
    finally:
        await executor.aclose()
    assert isinstance(rejected, ErrorInfo)
    assert (rejected.type, rejected.retryable) == ("CircuitOpen", True)
    assert len(echo.received) == 2


async def test_telemetry_spans_carry_the_reference_and_inject_traceparent(
    echo: EchoServer,
) -> None:
    """With telemetry: a client span with the URL as written, traceparent sent, gauge set."""
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.for_tests(exporter)
    settings = HttpSettings(allow=LOOPBACK, breaker_failures=1)
    executor = HttpExecutor(
        settings,
        environ={"TREADLE_SECRET_TOKEN": SECRET},
        breaker_listener=breaker_gauge(telemetry.metrics.registry),
        telemetry=telemetry,
    )
    url = f"{echo.url}/status/500?k=${{ secret.TOKEN }}"
    try:
        await executor.run({"url": url, "secrets": [["url"]]})
    finally:
        await executor.aclose()
    assert "traceparent" in {k.lower() for k in echo.received[0].headers}
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["url.full"] == url
    assert span.attributes["http.response.status_code"] == 500
    host = echo.url.removeprefix("http://")
    gauge = telemetry.metrics.registry.get_sample_value(
        "treadle_http_circuit_state", {"host": host}
    )
    assert gauge == 2


async def test_an_http_output_over_max_output_bytes_fails_the_attempt(echo: EchoServer) -> None:
    """An http answer whose output is over `limits.max_output_bytes` (though under
    `http.max_response_bytes`) fails the attempt as OutputTooLarge, not retried."""
    executor = _executor()
    dispatch = DispatchTask(
        run_id="r1",
        task_id="call",
        attempt=1,
        task_type="http",
        queue="default",
        input={"url": f"{echo.url}/big?bytes=5000"},
    )
    ctx = TaskContext(run_id="r1", task_id="call", attempt=1)
    try:
        result = await execute(
            dispatch,
            ctx,
            HandlerRegistry(),
            worker="w1",
            traceback_lines=5,
            http=executor,
            max_output_bytes=4000,
        )
    finally:
        await executor.aclose()
    assert isinstance(result, TaskFailed)
    assert (result.error.type, result.error.retryable) == ("OutputTooLarge", False)
    assert "max_output_bytes (4000)" in result.error.message


@pytest.fixture
def other() -> Iterator[EchoServer]:
    """A second echo server: another port of 127.0.0.1, so another origin."""
    with echo_server() as server:
        yield server


@pytest.mark.parametrize("status", [307, 308])
async def test_a_body_is_never_re_sent_to_another_origin(
    echo: EchoServer, other: EchoServer, status: int
) -> None:
    """A cross-origin 307/308 of a request with a body is not followed: the attempt fails
    HttpRedirectRefused (not retried) and the other origin receives nothing."""
    result = await _run(
        {
            "method": "POST",
            "url": f"{echo.url}/redirect/{status}?to={other.url}/echo",
            "json": {"card": "${ secret.TOKEN }"},
            "secrets": [["json", "card"]],
        },
        follow_redirects=True,
    )
    assert isinstance(result, ErrorInfo)
    assert (result.type, result.retryable) == ("HttpRedirectRefused", False)
    assert f"answered {status}" in result.message
    assert other.received == []
    assert SECRET in echo.received[0].body.decode()  # the named origin got it, as asked


@pytest.mark.parametrize("status", [307, 308])
async def test_a_same_origin_307_308_re_sends_the_body(echo: EchoServer, status: int) -> None:
    """Within one origin a 307/308 keeps the method and body, as RFC 9110 says."""
    result = await _run(
        {"method": "POST", "url": f"{echo.url}/redirect/{status}?to=/echo", "json": {"a": 1}},
        follow_redirects=True,
    )
    assert not isinstance(result, ErrorInfo), result
    assert (result["json"]["method"], result["json"]["body"]) == ("POST", '{"a":1}')


async def test_credentials_and_secret_headers_stay_with_their_origin(
    echo: EchoServer, other: EchoServer
) -> None:
    """Following a redirect to another origin drops Authorization, Cookie and any header
    that carried a secret; other headers go along."""
    result = await _run(
        {
            "url": f"{echo.url}/redirect/307?to={other.url}/echo",
            "headers": {
                "Authorization": "Basic dXNlcjpwdw==",
                "Cookie": "session=1",
                "X-Token": "${ secret.TOKEN }",
                "X-Trace": "abc",
            },
            "secrets": [["headers", "X-Token"]],
        },
        follow_redirects=True,
    )
    assert not isinstance(result, ErrorInfo), result
    [arrived] = other.received
    names = {name.lower() for name in arrived.headers}
    assert names.isdisjoint({"authorization", "cookie", "x-token"})
    assert arrived.headers["X-Trace"] == "abc"
    assert echo.received[0].headers["X-Token"] == SECRET


async def test_a_303_drops_the_body_and_what_described_it(echo: EchoServer) -> None:
    """A 303 turns a POST into a GET without its body or its Content-Type."""
    result = await _run(
        {
            "method": "POST",
            "url": f"{echo.url}/redirect/303?to=/echo",
            "headers": {"Content-Type": "application/json"},
            "json": {"a": 1},
        },
        follow_redirects=True,
    )
    assert not isinstance(result, ErrorInfo), result
    assert (result["json"]["method"], result["json"]["body"]) == ("GET", "")
    assert "content-type" not in result["json"]["headers"]
