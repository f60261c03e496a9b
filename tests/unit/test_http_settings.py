"""The [http] settings section, from the environment."""

from __future__ import annotations

from treadle.config import load_settings


def test_the_allowlist_is_a_comma_separated_environment_variable() -> None:
    """TREADLE_HTTP__ALLOW splits on commas like the other list keys."""
    settings = load_settings(environ={"TREADLE_HTTP__ALLOW": "127.0.0.1/32, internal.example"})
    assert settings.http.allow == ["127.0.0.1/32", "internal.example"]
    assert settings.http.secret_prefix == "TREADLE_SECRET_"


def test_secret_variables_are_not_read_as_settings() -> None:
    """TREADLE_SECRET_<NAME> (no double underscore) never trips the unknown-key check."""
    settings = load_settings(environ={"TREADLE_SECRET_API_TOKEN": "x"})
    assert settings.http.allow == []
