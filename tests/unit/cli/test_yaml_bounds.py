"""Definition files are loaded with bounds: alias bombs, recursive aliases and huge files
are refused (exit 2, one line) before anything expands them."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from tests.unit.cli._fake_client import FakeClient
from tests.unit.cli.test_cli import treadle
from treadle.cli import _yaml


def _billion_laughs() -> str:
    """Nine levels of ten aliases each: 10**9 strings once expanded, 1 KB on disk."""
    lines = ['a0: &a0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\nname: bomb\ntasks: {t: {handler: x.y, input: *a9}}\n"


def test_a_billion_laughs_file_fails_fast_with_bounded_memory(tmp_path: Path) -> None:
    """`workflow apply` of an alias bomb exits 2 naming the expansion, in well under a
    second and a few MB, and never reaches the server."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_billion_laughs())
    client = FakeClient([])
    tracemalloc.start()
    started = time.perf_counter()
    try:
        code, term = treadle(client, "workflow", "apply", str(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert code == 2
    assert "bomb.yaml is refused" in term.err.getvalue()
    assert "expand past" in term.err.getvalue()
    assert term.err.getvalue().count("\n") == 1
    assert client.calls == []
    assert peak < 10 * 1024 * 1024
    assert elapsed < 5.0  # generous for a loaded machine; unbounded would never finish


def test_more_aliases_than_the_cap_are_refused(tmp_path: Path) -> None:
    """A file with more than `MAX_ALIASES` aliases is refused even if each is small."""
    file = tmp_path / "many.yaml"
    refs = ", ".join(["*x"] * (_yaml.MAX_ALIASES + 1))
    file.write_text(f"name: many\nx: &x 1\nlist: [{refs}]\n")
    with pytest.raises(_yaml.YamlRefused, match="more than 1000 YAML aliases"):
        _yaml.load_bounded(file)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    """An alias inside its own anchor (a structure that contains itself) is refused."""
    file = tmp_path / "loop.yaml"
    file.write_text("name: loop\nme: &me [1, *me]\n")
    with pytest.raises(_yaml.YamlRefused, match="refers to its own anchor"):
        _yaml.load_bounded(file)


def test_a_file_over_the_size_cap_is_refused_without_reading_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than `MAX_FILE_BYTES` is refused by its size."""
    monkeypatch.setattr(_yaml, "MAX_FILE_BYTES", 100)
    file = tmp_path / "big.yaml"
    file.write_text("name: big\nnote: " + "x" * 200 + "\n")
    with pytest.raises(_yaml.YamlRefused, match="larger than 100 bytes"):
        _yaml.load_bounded(file)


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A document nested deeper than the parser's stack is a refusal, not a RecursionError."""
    file = tmp_path / "deep.yaml"
    file.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(_yaml.YamlRefused, match="nested too deeply"):
        _yaml.load_bounded(file)


def test_shared_anchors_in_a_real_definition_still_load(tmp_path: Path) -> None:
    """Anchors used the ordinary way (one retry policy for several tasks) load as before."""
    file = tmp_path / "shared.yaml"
    file.write_text(
        "name: shared\n"
        "x-retry: &retry {max_attempts: 3, initial_interval: 1s}\n"
        "tasks:\n"
        "  a: {handler: x.a, retry: *retry}\n"
        "  b: {handler: x.b, retry: *retry, after: [a]}\n"
    )
    loaded = _yaml.load_bounded(file)
    assert loaded["tasks"]["b"]["retry"] == {"max_attempts": 3, "initial_interval": "1s"}


def test_an_empty_file_and_bad_utf8_are_usage_errors(tmp_path: Path) -> None:
    """An empty file is not a definition, and a non-UTF-8 file says so; both exit 2."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    for file, said in ((empty, "must hold one workflow definition"), (binary, "not UTF-8")):
        code, term = treadle(FakeClient([]), "workflow", "apply", str(file))
        assert code == 2
        assert said in term.err.getvalue()
