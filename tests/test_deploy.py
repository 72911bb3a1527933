"""The deployment files agree with the service and with each other.

No container engine runs in CI, so these check what a wrong edit would break: the image runs the console script the
tests exercise, its health check really probes the server, every INITSERVE_* variable the deployment sets is one the
service reads (pydantic-settings ignores unknown ones, so a typo would pass silently), the memory limits hold the
configured budgets, and compose, nginx and Kubernetes name the same ports, paths and user. Schema validation of the
compose file and the manifests, and hadolint, run in .ci/run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.server import CONSOLE_SCRIPT, free_port, serve

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        instruction, _, rest = pending.strip().partition(" ")
        logical.append((instruction.upper(), rest.strip()))
        pending = ""
    return logical


def instructions(name: str) -> list[str]:
    return [rest for instruction, rest in dockerfile() if instruction == name]


def healthcheck_command() -> list[str]:
    (spec,) = instructions("HEALTHCHECK")
    return json.loads(spec[spec.index("CMD") + len("CMD") :])


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s.yaml").read_text()) if doc}


def deployment_container() -> dict[str, Any]:
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def nginx_conf() -> str:
    return re.sub(r"#[^\n]*", "", (ROOT / "deploy" / "nginx.conf").read_text())


def bytes_of(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(quantity)).groups()  # type: ignore[union-attr]
    return int(number) * SIZES[unit.lower().removesuffix("b")]


def assert_valid_settings(env: dict[str, str]) -> Settings:
    ours = {
        name.removeprefix("INITSERVE_").lower(): value for name, value in env.items() if name.startswith("INITSERVE_")
    }
    unknown = set(ours) - set(Settings.model_fields)
    assert not unknown, f"variables the service does not read: {sorted(unknown)}"
    return Settings(**ours)


# The image


def test_image_runs_the_console_script_the_tests_run():
    (cmd,) = instructions("CMD")
    assert json.loads(cmd) == [CONSOLE_SCRIPT.name, "serve"]  # exec form: the server is PID 1 and gets SIGTERM
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[CONSOLE_SCRIPT.name] == "service.cli:main"
    assert "ENTRYPOINT" not in dict(dockerfile())


def test_image_is_multi_stage_on_a_configurable_base_and_index():
    args = instructions("ARG")
    assert "BASE_IMAGE=python:3.11-slim" in args
    assert any(arg.startswith("PIP_INDEX_URL") for arg in args)
    stages = instructions("FROM")
    assert len(stages) >= 2 and all(stage.startswith("${BASE_IMAGE}") for stage in stages)
    # A Debian base has python3 but no `python`: every command says python3 or names the venv's interpreter.
    for run in instructions("RUN"):
        assert not re.search(r"(^|[\s&;|])python\s", run), run


def test_image_runs_as_an_unprivileged_numeric_user():
    (user,) = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000
    container = deployment_container()
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == uid and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_build_context_holds_what_the_image_copies_and_nothing_else():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*", "an allow-list: new files (secrets, tensors, .venv) stay out by default"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for rest in instructions("COPY")
        if not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied == allowed


def test_image_compiles_the_kernels_at_build_and_copies_them_to_a_writable_cache_at_start():
    env = dict(item.split("=", 1) for rest in instructions("ENV") for item in rest.split())
    shipped = env["INITSERVE_KERNEL_CACHE"]
    assert shipped.startswith("/opt/initserve/"), "inside the virtualenv the final stage copies"
    assert any(f"/opt/initserve/bin/initserve kernels {shipped}" in run for run in instructions("RUN"))
    # numba refuses a cache directory it cannot write: /tmp is the one writable place (tmpfs, emptyDir).
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")
    assert_valid_settings(env)


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="initserve console script not installed")
def test_healthcheck_command_passes_on_a_ready_server_and_fails_without_one():
    probe = healthcheck_command()
    assert probe[0] == "python3" and "urllib.request" in probe[-1]  # the slim image has no curl
    with serve() as (url, _):
        port = url.rsplit(":", 1)[1]
        ready = subprocess.run([sys.executable, *probe[1:]], env={"INITSERVE_PORT": port}, capture_output=True)
        assert ready.returncode == 0, ready.stderr.decode()
    closed = subprocess.run([sys.executable, *probe[1:]], env={"INITSERVE_PORT": str(free_port())}, capture_output=True)
    assert closed.returncode != 0


# docker compose


def test_compose_service_checks_health_restarts_and_is_bounded():
    service = compose()["services"]["initserve"]
    assert service["healthcheck"]["test"] == ["CMD", *healthcheck_command()]
    assert service["restart"] in ("always", "unless-stopped")
    assert service["stop_signal"] == "SIGTERM" and service["stop_grace_period"]
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    settings = assert_valid_settings(service["environment"])
    per_worker = settings.memory_budget_bytes + settings.cache_bytes
    assert bytes_of(limits["memory"]) > settings.workers * per_worker, "the limit must hold every worker's budgets"
    assert settings.host == "0.0.0.0"


def test_compose_runs_replicas_behind_the_caching_proxy():
    services = compose()["services"]
    replicas, proxy = services["initserve"], services["proxy"]
    assert replicas["deploy"]["replicas"] >= 3
    assert "ports" not in replicas, "replicas are reached through the proxy; a host port cannot be shared by three"
    assert proxy["depends_on"]["initserve"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    container_port = proxy["ports"][0].split(":")[-1]
    assert re.search(rf"listen\s+{container_port};", nginx_conf())
    port = replicas["environment"]["INITSERVE_PORT"]
    assert re.search(rf"server\s+initserve:{port}\b", nginx_conf())


def test_proxy_caches_what_the_service_marks_cacheable_keyed_by_what_selects_the_bytes():
    conf = nginx_conf()
    (key,) = re.findall(r"proxy_cache_key\s+\"([^\"]+)\";", conf)
    assert {"$request_uri", "$http_accept", "$http_authorization"} <= set(re.findall(r"\$\w+", key))
    assert "proxy_cache_valid" not in conf, "lifetimes come from the service's Cache-Control, errors are never kept"
    assert "proxy_ignore_headers" not in conf
    assert re.search(r"proxy_cache_path\s+/var/cache/nginx/", conf)
    assert compose()["services"]["proxy"]["volumes"][1].endswith(":/var/cache/nginx")


# Kubernetes


def test_kubernetes_probes_liveness_and_readiness_on_the_service_port():
    container = deployment_container()
    assert "command" not in container and "args" not in container, "the image's CMD is the production command"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    (port,) = container["ports"]
    exposed = instructions("EXPOSE")
    assert exposed == [str(port["containerPort"])]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]


def test_kubernetes_runs_one_process_per_container_with_bounded_memory():
    deployment = manifests()["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    container = deployment_container()
    settings = assert_valid_settings({item["name"]: item["value"] for item in container["env"]})
    assert settings.workers == 1
    limit = bytes_of(container["resources"]["limits"]["memory"])
    assert limit > settings.memory_budget_bytes + settings.cache_bytes
    assert bytes_of(container["resources"]["requests"]["memory"]) <= limit
    # Writable /tmp on a read-only root: where `initserve serve` puts PROMETHEUS_MULTIPROC_DIR with several workers.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30
