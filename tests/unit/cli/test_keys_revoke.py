"""`treadle keys revoke` warns when it revokes the last active key (the API then stays locked)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from treadle.cli import build_parser
from treadle.cli._keys import keys_command
from treadle.config import AuthSettings, ConfigError, DatabaseSettings, Settings


def _keys(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """Run `treadle keys ARGV` on `settings`; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = keys_command(build_parser().parse_args(["keys", *argv]), settings, out, err)
    return code, out.getvalue(), err.getvalue()


def _create(settings: Settings, name: str) -> str:
    """A new admin key's id."""
    return _keys(settings, "create", name, "--scope", "admin")[1].strip().split("_")[1]


def test_revoking_the_last_key_warns_that_the_api_stays_locked(tmp_path: Path) -> None:
    """Revoking one of two keys is quiet; revoking the last says the API stays locked and
    how to reopen it."""
    settings = Settings(database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    first, second = _create(settings, "a"), _create(settings, "b")
    code, out, err = _keys(settings, "revoke", first)
    assert (code, err) == (0, "")
    assert out == f"revoked API key {first} (a)\n"
    code, out, err = _keys(settings, "revoke", second)
    assert code == 0
    assert "warning: that was the last active key" in err
    assert "stays locked" in err
    assert 'auth.mode = "off"' in err
    assert "treadle keys create" in err


def test_no_warning_when_auth_is_off(tmp_path: Path) -> None:
    """With `auth.mode = "off"` keys gate nothing, so revoking the last one is quiet."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db"),
        auth=AuthSettings(mode="off"),
    )
    key = _create(settings, "a")
    assert _keys(settings, "revoke", key)[2] == ""


def test_keys_refuse_the_in_memory_store() -> None:
    """`treadle keys` on memory:// names the setting instead of making a key no server sees."""
    settings = Settings(database=DatabaseSettings(url="memory://"))
    with pytest.raises(ConfigError) as refused:
        _keys(settings, "create", "ci")
    assert refused.value.key == "database.url"
    assert "inside the serving process" in refused.value.reason


def test_keys_list_outside_the_project_folder_names_the_database_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a folder with no treadle.db, `keys list` says which file it looked for (and where
    from) instead of creating an empty database the server never reads."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(database=DatabaseSettings(url="sqlite+aiosqlite:///./treadle.db"))
    with pytest.raises(ConfigError) as refused:
        _keys(settings, "list")
    assert refused.value.key == "database.url"
    assert f"no database at {tmp_path / 'treadle.db'}" in refused.value.reason
    assert "TREADLE_DATABASE_URL" in refused.value.reason
    assert not (tmp_path / "treadle.db").exists()


def test_keys_create_says_which_database_holds_the_key(tmp_path: Path) -> None:
    """`keys create` names the database (and a new file as new); stdout is the token alone."""
    db = tmp_path / "t.db"
    settings = Settings(database=DatabaseSettings(url=f"sqlite+aiosqlite:///{db}"))
    code, out, err = _keys(settings, "create", "ci")
    assert code == 0
    assert out.startswith("trd_")
    assert out.count("\n") == 1
    assert f"in sqlite+aiosqlite:///{db} ({db}, a new file)" in err
    _, _, err = _keys(settings, "create", "ops")
    assert f"({db})" in err
    assert "a new file" not in err


def test_keys_list_as_json_has_no_secret_digest(tmp_path: Path) -> None:
    """`keys list -o json` is `{items, next_cursor}` without any key's secret hash."""
    settings = Settings(database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    _create(settings, "a")
    _, out, _ = _keys(settings, "list", "-o", "json")
    [item] = json.loads(out)["items"]
    assert item["name"] == "a"
    assert "secret_hash" not in item
