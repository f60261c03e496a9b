"""Redaction: secrets, URL passwords and oversize values never reach a log line."""

from __future__ import annotations

from tests.unit.observability.conftest import LogCapture
from treadle.observability import Redactor, get_logger, strip_url_passwords


def test_secret_named_keys_are_redacted(logs: LogCapture) -> None:
    """Values under password/token/authorization/api_key-like keys become [redacted]."""
    get_logger("x").info(
        "connecting",
        password="hunter2",
        db_password="p",
        Authorization="Bearer abc",
        api_key="k",
        access_token="t",
        client_secret="s",
        user="alice",
    )

    [line] = logs.lines()
    for key in ("password", "db_password", "Authorization", "api_key", "access_token"):
        assert line[key] == "[redacted]", key
    assert line["client_secret"] == "[redacted]"
    assert line["user"] == "alice"
    assert "hunter2" not in logs.text()


def test_secrets_nested_in_a_payload_are_redacted(logs: LogCapture) -> None:
    """A small task input keeps its shape but its secret-named fields are hidden."""
    get_logger("x").info("task input", input={"user": "a", "auth": {"token": "t"}, "n": [1]})

    [line] = logs.lines()
    assert line["input"] == {"user": "a", "auth": {"token": "[redacted]"}, "n": [1]}


def test_url_passwords_are_stripped_from_values_and_messages(logs: LogCapture) -> None:
    """postgresql://u:pw@h/db reads postgresql://u:***@h/db in the message and in values."""
    get_logger("x").info(
        "connecting to amqp://guest:guest@rabbit:5672/",
        url="postgresql://u:s3cret@db/treadle",
    )

    [line] = logs.lines()
    assert line["message"] == "connecting to amqp://guest:***@rabbit:5672/"
    assert line["url"] == "postgresql://u:***@db/treadle"


def test_url_without_password_is_unchanged() -> None:
    """A URL with no credentials, or only a user, is left as it is."""
    assert strip_url_passwords("http://host:8080/x") == "http://host:8080/x"
    assert strip_url_passwords("nats://user@host:4222") == "nats://user@host:4222"


def test_a_password_with_an_unencoded_at_sign_is_hidden_whole() -> None:
    """The one redaction every adapter and the CLI use hides the whole password: the
    CLI's own copy did, the shared one used to leave what followed the first `@`."""
    assert strip_url_passwords("postgresql://u:p@ss@db/x") == "postgresql://u:***@db/x"
    assert strip_url_passwords("nats://:token@127.0.0.1:4222") == "nats://:***@127.0.0.1:4222"
    assert strip_url_passwords("see http://h:8080/a@b now") == "see http://h:8080/a@b now"


def test_oversize_values_are_elided(logs: LogCapture) -> None:
    """A value whose JSON is over max_value_bytes becomes a short '<N bytes elided>' marker."""
    logs.configure(format="json", max_value_bytes=100)
    get_logger("x").info("done", output={"rows": ["x" * 40] * 10}, small={"ok": True})

    [line] = logs.lines()
    assert line["output"].endswith("bytes elided>")
    assert line["small"] == {"ok": True}


def test_oversize_message_is_truncated_not_dropped() -> None:
    """A huge message keeps its beginning and says how much was cut."""
    redactor = Redactor(max_value_bytes=10)
    event = redactor(None, "info", {"event": "abcdefghijklmnopqrstuvwxyz"})

    assert event["event"] == "abcdefghij... <16 bytes elided>"


def test_tracebacks_are_not_elided() -> None:
    """exc_info and exception keys are exempt: a long traceback is not a payload."""
    redactor = Redactor(max_value_bytes=10)
    event = redactor(None, "error", {"event": "x", "exception": "Traceback " * 50})

    assert event["exception"].startswith("Traceback")
