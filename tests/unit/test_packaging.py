"""The source folder app/ installs, and is imported, as `treadle`, with every subpackage.

setuptools maps the name to the folder (`package-dir`) from an explicit package list, so a
new subpackage missing from that list would import in a checkout and be absent from the
wheel; this keeps the list whole.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import treadle

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_of_app_is_listed_under_its_import_name() -> None:
    """Each folder of app/ with an `__init__.py` is a `treadle.*` package of the build."""
    setuptools = _pyproject()["tool"]["setuptools"]  # type: ignore[index]
    assert setuptools["package-dir"] == {"treadle": "app"}
    found = {
        ".".join(("treadle", *init.parent.relative_to(ROOT / "app").parts))
        for init in (ROOT / "app").rglob("__init__.py")
    }
    assert sorted(setuptools["packages"]) == sorted(found)


def test_every_data_file_of_app_ships_in_the_wheel() -> None:
    """Each file of app/ that is not a module of a listed package (the example's YAML, the
    migrations, the dashboard's and the docs page's files) matches a `package-data` pattern."""
    setuptools = _pyproject()["tool"]["setuptools"]  # type: ignore[index]
    app = ROOT / "app"
    # setuptools globs each pattern from the package's folder; `*` stays within one folder.
    shipped = {
        path for pattern in setuptools["package-data"]["treadle"] for path in app.glob(pattern)
    }
    data = {
        path
        for path in app.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not _in_a_package(path)
    }
    assert {p for p in data if p.parent.name == "examples"}, "the quick start's YAML is found"
    assert sorted(str(p.relative_to(app)) for p in data - shipped) == []


def _in_a_package(path: Path) -> bool:
    return path.suffix == ".py" and (path.parent / "__init__.py").exists()


def test_the_import_name_is_treadle_and_the_source_is_app() -> None:
    """`import treadle` loads app/; the name `app` stays free for a user's own package."""
    assert Path(treadle.__file__).resolve() == ROOT / "app" / "__init__.py"
    assert _pyproject()["project"]["scripts"] == {"treadle": "treadle.cli:main"}  # type: ignore[index]


def test_a_project_with_its_own_app_package_imports_its_handlers(tmp_path: Path) -> None:
    """The usual layout of a web service (`app/tasks.py`) no longer collides with Treadle."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "tasks.py").write_text(
        "from treadle import handler\n\n@handler('mine.hello')\nasync def hello(ctx, data):\n"
        "    return data\n"
    )
    # What `treadle serve --handlers app.tasks` does from the project's folder.
    probe = (
        "from treadle.modules.worker import HandlerRegistry; "
        "print(HandlerRegistry.from_modules(['app.tasks']).names())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['mine.hello']"
