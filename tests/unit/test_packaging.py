"""The source folder app/ installs, and is imported, as `treadle`, with every subpackage.

setuptools maps the name to the folder (`package-dir`) from an explicit package list, so a
new subpackage missing from that list would import in a checkout and be absent from the
wheel; this keeps the list whole.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

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


def _requirements(texts: list[object]) -> set[tuple[str, SpecifierSet]]:
    """(canonical name, specifiers) of requirement strings; `include-group` tables skipped."""
    found = set()
    for text in texts:
        if isinstance(text, str):
            req = Requirement(text)
            found.add((canonicalize_name(req.name), req.specifier))
    return found


def _groups() -> dict[str, list[object]]:
    return _pyproject()["dependency-groups"]  # type: ignore[return-value]


def _group_requirements(name: str) -> set[tuple[str, SpecifierSet]]:
    """A dependency group's requirements, included groups followed (PEP 735)."""
    found = set()
    for entry in _groups()[name]:
        if isinstance(entry, dict):
            found |= _group_requirements(entry["include-group"])
        else:
            found |= _requirements([entry])
    return found


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    """PEP 639: `license` is the SPDX id, the text ships, and setuptools can read both."""
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"  # type: ignore[index]
    assert project["license-files"] == ["LICENSE"]  # type: ignore[index]
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    (setuptools,) = _pyproject()["build-system"]["requires"]  # type: ignore[index]
    assert Requirement(setuptools).specifier.contains("77")
    assert not Requirement(setuptools).specifier.contains("76.1")


def test_the_classifiers_name_only_the_python_versions_that_are_required() -> None:
    """Each `Python :: 3.x` classifier is inside `requires-python`, and 3.11 (CI's) is there."""
    project = _pyproject()["project"]
    requires = SpecifierSet(project["requires-python"])  # type: ignore[index]
    prefix = "Programming Language :: Python :: 3."
    versions = [
        c.removeprefix("Programming Language :: Python :: ")
        for c in project["classifiers"]
        if c.startswith(prefix)
    ]  # type: ignore[index]
    assert "3.11" in versions
    assert all(requires.contains(v) for v in versions)
    assert "License ::" not in " ".join(project["classifiers"])  # type: ignore[index]  # PEP 639


def test_the_test_extra_installs_every_development_group() -> None:
    """pip 23 has no --group, so `.[test]` (the README's command) repeats the groups."""
    test_extra = _requirements(_pyproject()["project"]["optional-dependencies"]["test"])  # type: ignore[index]
    assert _group_requirements("dev") | {("treadle", SpecifierSet())} == test_extra
    assert set(_groups()) == {"test", "lint", "deploy", "dev"}


def test_the_http_stack_the_http_task_patches_is_bounded_above() -> None:
    """The http task swaps httpx's private pool for httpcore's: a new major is not taken."""
    deps = dict(_requirements(_pyproject()["project"]["dependencies"]))  # type: ignore[index]
    for name, first_untested in (("httpx", "0.30"), ("httpcore", "2.0")):
        assert not deps[name].contains(first_untested), name
        assert deps[name].contains(version(name)), f"{name} {version(name)} is installed"


def test_the_lock_file_was_made_from_this_pyproject() -> None:
    """uv.lock records the requirements it resolved; they are today's (`uv lock` was run)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (treadle,) = [p for p in lock["package"] if p["name"] == "treadle"]
    locked = {
        (r["name"], SpecifierSet(r.get("specifier", "")))
        for r in treadle["metadata"]["requires-dist"]
    }
    project = _pyproject()["project"]
    declared = _requirements(project["dependencies"])  # type: ignore[index]
    for extra in project["optional-dependencies"].values():  # type: ignore[index]
        declared |= _requirements(extra)
    assert locked == declared
    assert treadle["version"] == project["version"]  # type: ignore[index]
    for group, requirements in treadle["metadata"]["requires-dev"].items():
        locked_group = {(r["name"], SpecifierSet(r.get("specifier", ""))) for r in requirements}
        assert locked_group == _group_requirements(group), group
