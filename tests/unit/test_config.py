"""load_settings: defaults, a file, TREADLE_* variables, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.config import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "treadle.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_the_packaged_file() -> None:
    """With no file and no environment, the packaged defaults apply."""
    settings = load_settings(environ={})
    assert isinstance(settings, Settings)
    assert settings.database.url == "sqlite+aiosqlite:///./treadle.db"
    assert settings.transport.kind == "memory"
    assert settings.api.port == 8000
    assert settings.worker.queues == ["default"]


def test_a_file_overrides_the_defaults_key_by_key(tmp_path: Path) -> None:
    """A config file changes only the keys it sets; the section's other keys keep defaults."""
    path = write(tmp_path, '[api]\nport = 9001\n[transport]\nkind = "nats"\n')
    settings = load_settings(path, environ={})
    assert settings.api.port == 9001
    assert settings.api.host == "127.0.0.1"
    assert settings.transport.kind == "nats"


def test_treadle_config_names_the_file(tmp_path: Path) -> None:
    """TREADLE_CONFIG points at the file when no path is passed."""
    path = write(tmp_path, "[worker]\nconcurrency = 3\n")
    assert load_settings(environ={"TREADLE_CONFIG": str(path)}).worker.concurrency == 3


def test_section_key_variables_override_the_file(tmp_path: Path) -> None:
    """TREADLE_<SECTION>__<KEY> wins over the file and is converted to the field's type."""
    path = write(tmp_path, "[api]\nport = 9001\n")
    environ = {
        "TREADLE_API__PORT": "9002",
        "TREADLE_DATABASE__ECHO": "true",
        "TREADLE_ORCHESTRATOR__DEFAULT_TASK_TIMEOUT": "12.5",
    }
    settings = load_settings(path, environ=environ)
    assert settings.api.port == 9002
    assert settings.database.echo is True
    assert settings.orchestrator.default_task_timeout == 12.5


def test_short_names_and_comma_lists() -> None:
    """The convenience names set their keys, and list keys split on commas."""
    environ = {
        "TREADLE_DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "TREADLE_TRANSPORT": "rabbitmq",
        "TREADLE_BROKER_URL": "amqp://guest:guest@127.0.0.1/",
        "TREADLE_HANDLERS": "shop.handlers, billing.handlers,,",
        "TREADLE_WORKER__QUEUES": "default,fast",
    }
    settings = load_settings(environ=environ)
    assert settings.database.url == "postgresql+asyncpg://u@h/db"
    assert settings.transport.kind == "rabbitmq"
    assert settings.transport.url == "amqp://guest:guest@127.0.0.1/"
    assert settings.worker.handlers == ["shop.handlers", "billing.handlers"]
    assert settings.worker.queues == ["default", "fast"]


def test_unrelated_variables_are_ignored() -> None:
    """Variables without the TREADLE_ prefix, or without a section, change nothing."""
    environ = {"PATH": "/bin", "TREADLE_SOMETHING": "x", "API__PORT": "1"}
    assert load_settings(environ=environ) == load_settings(environ={})


def test_a_bad_value_names_its_key_in_one_line() -> None:
    """A value of the wrong type fails with the dotted key and the reason."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TREADLE_API__PORT": "eighty"})
    assert caught.value.key == "api.port"
    assert str(caught.value).startswith("config api.port: ")
    assert "\n" not in str(caught.value)


def test_schedule_to_start_is_off_by_default_and_must_be_positive() -> None:
    """The schedule-to-start default is None until set; zero or less fails naming the key."""
    assert load_settings(environ={}).orchestrator.default_schedule_to_start_timeout is None
    key = "TREADLE_ORCHESTRATOR__DEFAULT_SCHEDULE_TO_START_TIMEOUT"
    settings = load_settings(environ={key: "5"})
    assert settings.orchestrator.default_schedule_to_start_timeout == 5.0
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={key: "0"})
    assert caught.value.key == "orchestrator.default_schedule_to_start_timeout"


def test_max_sync_threads_defaults_above_concurrency_and_must_be_positive() -> None:
    """worker.max_sync_threads is set from the environment; zero fails naming the key."""
    defaults = load_settings(environ={}).worker
    assert defaults.max_sync_threads > defaults.concurrency
    key = "TREADLE_WORKER__MAX_SYNC_THREADS"
    assert load_settings(environ={key: "8"}).worker.max_sync_threads == 8
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={key: "0"})
    assert caught.value.key == "worker.max_sync_threads"


def test_a_bad_choice_names_its_key() -> None:
    """An unknown transport kind is reported at transport.kind."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TREADLE_TRANSPORT": "carrier-pigeon"})
    assert caught.value.key == "transport.kind"


def test_unknown_keys_are_typos(tmp_path: Path) -> None:
    """An unknown key in a file or the environment is an error naming it."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[api]\nprot = 1\n"), environ={})
    assert (caught.value.key, caught.value.reason) == ("api.prot", "unknown key")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TREADLE_NOSUCH__KEY": "1"})
    assert (caught.value.key, caught.value.reason) == ("nosuch", "unknown key")


def test_missing_or_broken_files_are_config_errors(tmp_path: Path) -> None:
    """A missing file or invalid TOML fails with the file's path as the key."""
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="file not found") as caught:
        load_settings(missing, environ={})
    assert caught.value.key == str(missing)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[api\n"), environ={})


def test_the_inline_value_bound_defaults_to_64_kib_and_must_be_positive() -> None:
    """`limits.max_inline_value_bytes` is 65,536 in default.toml; zero fails naming the key."""
    key = "TREADLE_LIMITS__MAX_INLINE_VALUE_BYTES"
    assert load_settings(environ={}).limits.max_inline_value_bytes == 65_536
    assert load_settings(environ={key: "100"}).limits.max_inline_value_bytes == 100
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={key: "0"})
    assert caught.value.key == "limits.max_inline_value_bytes"
