"""The Compose file and Kubernetes manifests stay valid against the image and the CLI.

They cannot be run here (no container engine), so their syntax and their references are
checked: every Treadle service uses the image, every command parses with `treadle`'s own
argument parser, and every Deployment probes /readyz and /healthz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from treadle.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE = "treadle:latest"


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every YAML document in a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def assert_cli_accepts(args: list[str]) -> None:
    """The arguments parse with the real CLI parser (exits on an unknown flag or verb)."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on a bad command line
        pytest.fail(f"`treadle {' '.join(args)}` does not parse: exit {exc.code}")


def compose_services() -> dict[str, dict[str, Any]]:
    """The services of deploy/compose.yaml."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return dict(compose["services"])


def test_compose_runs_every_role_from_the_image() -> None:
    """Compose has the database, the broker, a migration and one service per role."""
    services = compose_services()
    assert {"postgres", "rabbitmq", "migrate", "api", "orchestrator", "worker"} <= set(services)
    for name in ("migrate", "api", "orchestrator", "worker"):
        assert services[name]["image"] == IMAGE, name
        assert_cli_accepts(services[name]["command"])
    for role in ("api", "orchestrator", "worker"):
        assert "--roles" in services[role]["command"]
        assert services[role]["command"][services[role]["command"].index("--roles") + 1] == role


def test_compose_roles_wait_for_the_migration() -> None:
    """Roles start only after the schema migration succeeded."""
    services = compose_services()
    for role in ("api", "orchestrator", "worker"):
        condition = services[role]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def kubernetes_documents() -> list[dict[str, Any]]:
    """Every manifest under deploy/kubernetes."""
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs.extend(load_all(path))
    return docs


def test_kubernetes_has_a_deployment_per_role_with_probes() -> None:
    """Each role is a Deployment from the image, probed on /readyz and /healthz."""
    deployments = {
        d["metadata"]["name"]: d for d in kubernetes_documents() if d["kind"] == "Deployment"
    }
    assert set(deployments) == {"treadle-api", "treadle-orchestrator", "treadle-worker"}
    for deployment in deployments.values():
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
        (container,) = spec["template"]["spec"]["containers"]
        assert container["image"] == IMAGE
        assert_cli_accepts(container["args"])
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kubernetes_migration_job_runs_migrate() -> None:
    """A Job runs `treadle migrate` from the same image and configuration."""
    (job,) = [d for d in kubernetes_documents() if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["migrate"]
    assert_cli_accepts(container["args"])
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"treadle"}
