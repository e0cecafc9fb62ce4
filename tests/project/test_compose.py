"""Static checks of the deployment files: docker-compose.yml, Dockerfile, Grafana provisioning.

No Docker engine runs here, so these tests validate the Compose file against the Compose
Specification JSON schema and check what the schema cannot: that services refer to each other
and to files that exist, that the worker gets its settings, and that no password is written out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DATASOURCE_FILE = REPO / "dashboards" / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVIDER_FILE = REPO / "dashboards" / "provisioning" / "telltale.yaml"
COMPOSE_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "compose-spec.json"

REQUIRED_SERVICES = {"kafka", "clickhouse", "grafana", "worker", "migrate", "monitor"}
# `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`.
INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?-|:?\?)[^}]*)?\}")


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    document = _load_yaml(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml defines no services"
    return found


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a mapping, whichever of the two Compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return env
    result: dict[str, Any] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        result[key] = value if sep else None
    return result


def _mount_sources(service: dict[str, Any]) -> list[str]:
    """Source of every volume mount of a service (short `src:dst[:mode]` or long form)."""
    sources: list[str] = []
    for mount in service.get("volumes") or []:
        if isinstance(mount, str):
            if ":" in mount:
                sources.append(mount.split(":", 1)[0])
        elif isinstance(mount, dict) and mount.get("source"):
            sources.append(str(mount["source"]))
    return sources


def _mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Mapping source -> target for a service's volume mounts."""
    targets: dict[str, str] = {}
    for mount in service.get("volumes") or []:
        if isinstance(mount, str):
            parts = mount.split(":")
            if len(parts) >= 2:
                targets[parts[0]] = parts[1]
        elif isinstance(mount, dict) and mount.get("source"):
            targets[str(mount["source"])] = str(mount.get("target"))
    return targets


def _depends_on(service: dict[str, Any]) -> dict[str, Any]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


# --- schema -------------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    # A missing schema is a broken checkout, not a reason to skip the check.
    assert COMPOSE_SCHEMA.is_file(), f"Compose Specification schema not found at {COMPOSE_SCHEMA}"
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


# --- semantics ----------------------------------------------------------------------------------


def test_all_services_of_the_stack_are_defined(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_relative_mount_sources_exist_in_the_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services.items()
        for source in _mount_sources(service)
        if source.startswith("./") and not (REPO / source).exists()
    ]
    assert not missing, f"bind-mount sources that do not exist: {missing}"


def test_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    undeclared = [
        f"{name}: {source}"
        for name, service in services.items()
        for source in _mount_sources(service)
        if not source.startswith(("/", ".", "~", "$")) and source not in declared
    ]
    assert not undeclared, f"named volumes used but not declared: {undeclared}"


def test_depends_on_refers_to_existing_services(services: dict[str, dict[str, Any]]) -> None:
    dangling = [
        f"{name} -> {dep}"
        for name, service in services.items()
        for dep in _depends_on(service)
        if dep not in services
    ]
    assert not dangling, f"depends_on names unknown services: {dangling}"


def test_worker_waits_for_kafka_and_the_migration(services: dict[str, dict[str, Any]]) -> None:
    deps = _depends_on(services["worker"])
    assert deps.get("kafka", {}).get("condition") == "service_healthy"
    assert deps.get("migrate", {}).get("condition") == "service_completed_successfully"


def test_worker_environment_names_kafka_and_clickhouse(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["worker"])
    assert env.get("TELLTALE_KAFKA_BOOTSTRAP"), "worker lacks TELLTALE_KAFKA_BOOTSTRAP"
    assert env.get("TELLTALE_CLICKHOUSE_DSN"), "worker lacks TELLTALE_CLICKHOUSE_DSN"
    for name in ("migrate", "monitor"):
        assert _environment(services[name]).get("TELLTALE_CLICKHOUSE_DSN"), name


def test_passwords_come_only_from_interpolation(services: dict[str, dict[str, Any]]) -> None:
    offending = []
    for name, service in services.items():
        for key, value in _environment(service).items():
            if "PASSWORD" not in key.upper() or value is None:
                continue
            if not (isinstance(value, str) and INTERPOLATION.fullmatch(value.strip())):
                offending.append(f"{name}.{key}")
    assert not offending, f"plaintext password values (use ${{VAR}} interpolation): {offending}"


def test_dsns_carry_no_inline_password(services: dict[str, dict[str, Any]]) -> None:
    inline = re.compile(r"://[^/@:]+:[^/@]+@")
    offending = [
        f"{name}.{key}"
        for name, service in services.items()
        for key, value in _environment(service).items()
        if key.upper().endswith("DSN") and isinstance(value, str) and inline.search(value)
    ]
    assert not offending, f"DSNs with an inline password: {offending}"


def test_dockerfile_runs_telltale_as_a_non_root_user() -> None:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    entrypoints = [line for line in lines if line.upper().startswith("ENTRYPOINT")]
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    assert "telltale" in entrypoints[-1]
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert any("constraints.txt" in line for line in lines if line.upper().startswith("RUN"))


def test_telltale_services_build_the_image_and_run_their_command(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, command in (("worker", "worker"), ("migrate", "migrate"), ("monitor", "monitor")):
        service = services[name]
        assert service.get("build"), f"{name} does not build the telltale image"
        cmd = service.get("command")
        first = cmd[0] if isinstance(cmd, list) else str(cmd).split()[0]
        assert first == command, f"{name} runs {cmd!r}"


# --- Grafana provisioning -----------------------------------------------------------------------


def test_datasource_provisioning_defines_the_clickhouse_datasource() -> None:
    document = _load_yaml(DATASOURCE_FILE)
    assert document["apiVersion"] == 1
    sources = {ds["uid"]: ds for ds in document["datasources"]}
    assert "telltale-clickhouse" in sources
    ds = sources["telltale-clickhouse"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["jsonData"]["host"] == "clickhouse"
    assert int(ds["jsonData"]["port"]) == 8123
    assert ds["jsonData"]["protocol"] == "http"
    password = ds["secureJsonData"]["password"]
    assert re.fullmatch(r"\$(?:__env)?\{CLICKHOUSE_PASSWORD\}", password), password


def test_grafana_receives_the_password_the_datasource_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["grafana"])
    assert "CLICKHOUSE_PASSWORD" in env
    assert "grafana-clickhouse-datasource@" in str(env.get("GF_PLUGINS_PREINSTALL_SYNC", ""))


def test_dashboard_provider_reads_the_generated_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    document = _load_yaml(DASHBOARD_PROVIDER_FILE)
    assert document["apiVersion"] == 1
    (provider,) = [p for p in document["providers"] if p["name"] == "telltale"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Telltale"
    targets = _mount_targets(services["grafana"])
    assert targets.get("./dashboards/generated") == provider["options"]["path"]
    assert targets.get("./dashboards/provisioning") == "/etc/grafana/provisioning/dashboards"
    assert targets.get("./dashboards/datasources") == "/etc/grafana/provisioning/datasources"
