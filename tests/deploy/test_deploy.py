"""The deployment files keep their promises: Compose validates, non-root image, healthchecks, no public database."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.architecture import closure, graph, modules
from config.paths import PROJECT_DIR

ROOT = PROJECT_DIR
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "only-for-validation",
    "APP_DB_PASSWORD": "only-for-validation-too",
    "GRAFANA_PASSWORD": "only-for-validation-three",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_docker_compose_config_accepts_the_file() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    for args in (["config", "-q"], ["--profile", "monitoring", "config", "-q"]):
        result = subprocess.run(["docker-compose", *args], cwd=ROOT, env=COMPOSE_ENV, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_password() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed")
    for missing in ("POSTGRES_PASSWORD", "APP_DB_PASSWORD", "GRAFANA_PASSWORD"):
        env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
        for args in (["config", "-q"], ["--profile", "monitoring", "config", "-q"]):
            result = subprocess.run(["docker-compose", *args], cwd=ROOT, env=env, capture_output=True, text=True)
            assert result.returncode != 0 and missing in result.stderr, "never Grafana's admin/admin"


def test_the_postgres_upgrade_lives_in_an_override_and_leaves_the_old_volume(tmp_path: Path) -> None:
    """DEPLOYMENT.md's runbook: deploy/postgres-18.override.yml as docker-compose.override.yml moves the database to
    18 on a new volume at the same path (Compose merges mounts by path), docker-compose.yml untouched."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed")
    for name in ("docker-compose.yml", "Caddyfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "deploy" / "postgres-18.override.yml", tmp_path / "docker-compose.override.yml")
    result = subprocess.run(["docker-compose", "config"], cwd=tmp_path, env=COMPOSE_ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    db = yaml.safe_load(result.stdout)["services"]["db"]
    assert db["image"].startswith("postgres:18.") and db["environment"]["PGDATA"] == "/var/lib/postgresql/data"
    mounts = [v for v in db["volumes"] if "/var/lib/postgresql" in str(v)]
    assert mounts == ["pgdata18:/var/lib/postgresql/data:rw"], "the 17 volume is not mounted, so it stays as it was"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/docker-compose.override.yml" in ignored and "/secrets/" in ignored, "the operator's, never committed"


def test_database_is_private_persistent_and_healthchecked() -> None:
    services = compose()["services"]
    database = services["db"]
    assert re.fullmatch(r"postgres:17\.\d+", database["image"]), "pinned to a minor release"
    assert "ports" not in database, "the database port must not be published"
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in database["volumes"])
    assert "pgdata" in compose()["volumes"]
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert database["restart"] == "unless-stopped"


def test_app_waits_for_a_healthy_database_and_takes_credentials_from_env() -> None:
    app = compose()["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["restart"] == "unless-stopped"
    assert app["expose"] == ["8501"], "reached through Caddy only"
    for key, value in {**app["environment"], **compose()["services"]["db"]["environment"]}.items():
        if key == "OPERATOR_PASSWORD":  # optional: unset means no operator view and no export
            assert value == "${OPERATOR_PASSWORD:-}", f"{key} must come from .env"
        elif key == "OPERATOR_PASSWORD_FILE":  # or the secret file, mounted read-only
            assert value == "/run/secrets/operator_password"
        elif "PASSWORD" in key:
            assert re.fullmatch(r"\$\{(POSTGRES|APP_DB)_PASSWORD:\?.*\}", value), f"{key} must come from .env"
    assert app["environment"]["POSTGRES_USER"] == "${APP_DB_USER:-mnist_app}", "its own role, not the superuser"
    assert app["environment"]["POSTGRES_PASSWORD"].startswith("${APP_DB_PASSWORD:?")


def test_caddy_is_the_only_door_and_the_app_scales() -> None:
    services = compose()["services"]
    caddy, app = services["caddy"], services["app"]
    assert set(caddy["ports"]) == {"80:80", "443:443", "443:443/udp"}, "HTTP/3 needs UDP 443"
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"], "the Caddyfile the replica test runs"
    assert caddy["environment"]["APP_UPSTREAMS"] == "dns", "every replica of `app`, found by DNS"
    assert "ports" not in app and "container_name" not in app, "a published port or a fixed name stops --scale"
    assert app["environment"]["SPOOL_DIR"] == "/app/data", "each replica claims its own spool in the volume"


def test_every_service_rotates_its_logs_has_a_memory_limit_and_a_pinned_image() -> None:
    services = compose()["services"]
    assert {"db", "app", "caddy", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file" and options["max-size"] and options["max-file"], name
        assert re.fullmatch(r"\d+m", service["mem_limit"]), name
        if name != "app":
            assert re.search(r":v?\d+\.\d+(\.\d+)?$", service["image"]), f"{name}: pinned by version"
    assert "update:" in (ROOT / "Makefile").read_text(), "make update pulls them on purpose"


def test_app_and_caddy_drop_capabilities_and_only_the_app_reaches_the_database() -> None:
    services, networks = compose()["services"], compose()["networks"]
    for name in ("app", "caddy"):
        service = services[name]
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
    assert services["caddy"]["cap_add"] == ["NET_BIND_SERVICE"]
    on_backend = {name for name, service in services.items() if "backend" in service.get("networks", [])}
    assert on_backend == {"db", "app"} and networks["backend"]["internal"] is True
    assert "backend" not in services["caddy"]["networks"], "Caddy cannot reach the database"
    assert str(services["app"]["deploy"]["replicas"]).startswith("${APP_REPLICAS"), "the replica count is persisted"
    assert "/readyz" in " ".join(services["app"]["healthcheck"]["test"])
    init = [v for v in services["db"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init and init[0].startswith("./deploy/db-init.sh:"), "the app's role is made on an empty volume"


def test_image_runs_as_non_root_with_a_healthcheck_and_cpu_torch() -> None:
    text = dockerfile()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, flags=re.M), "healthy means ready"
    assert "whl/cpu" in text
    assert "COPY models/model.pth" in text


def test_build_context_has_runtime_files_only() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert {"app.py", "utils.py", "db.py", "models/model.pth", "requirements.txt"} <= allowed
    assert not any(name.startswith(("tests", "data", ".venv", ".env")) for name in allowed)
    copied = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile(), flags=re.M)
    for sources in copied:
        for source in sources.split():
            assert source in allowed, f"{source} is copied but excluded from the build context"


def test_github_workflow_gates_on_evaluation_and_deploys_only_from_main() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]
    assert {"lint", "typecheck", "test", "evaluate", "image", "deploy"} <= set(jobs)
    assert "postgres" in jobs["test"]["services"]
    gate = " ".join(step.get("run", "") for step in jobs["evaluate"]["steps"])
    assert "RECIPE.gate.min_official" in gate and ">= bar" in gate, "the bar is the recipe's, not a copy"
    deploy = jobs["deploy"]
    assert "refs/heads/main" in deploy["if"] and set(deploy["needs"]) >= {"test", "evaluate", "image"}
    script = deploy["steps"][-1]["run"]
    assert "secrets." not in script, "secrets reach the script through env, never inline"
    assert "$GITHUB_SHA $IMAGE" in script and deploy["steps"][-1]["env"]["IMAGE"] == "${{ needs.image.outputs.ref }}"


def test_workflow_has_least_permissions_an_environment_and_actions_pinned_by_commit() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {"contents": "read"}
    writers = {name for name, job in workflow["jobs"].items() if "write" in str(job.get("permissions", {}))}
    assert writers == {"image"} and workflow["jobs"]["image"]["permissions"]["packages"] == "write"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["environment"] == "production" and deploy["concurrency"]["cancel-in-progress"] is False
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref) for ref in uses), uses
    smoke = " ".join(step.get("run", "") for step in workflow["jobs"]["image"]["steps"])
    assert "/readyz" in smoke and "--read-only" in smoke, "the image that ships is the image that was tested"


def image_files() -> set[str]:
    """The project files the image holds: each COPY source, a folder standing for every file under it."""
    copied = " ".join(re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile(), flags=re.M)).split()
    files: set[str] = set()
    for source in copied:
        path = ROOT / source
        files |= {str(p.relative_to(ROOT)) for p in path.rglob("*.py")} if path.is_dir() else {source.rstrip("/")}
    return files


def test_image_copies_every_project_module_the_app_imports() -> None:
    """The app's own imports (inside functions too), followed through the project's modules and packages, all reach
    the image (a missing one would only fail at `docker run`, which nothing here can do); nothing from training/ or
    tools/ does."""
    known = modules()
    needed = closure({"server", "app"}, graph())
    assert {"utils", "db", "inference.network", "storage.reads", "views.history"} <= needed  # the walk follows packages
    files = {str(known[name].relative_to(ROOT)) for name in needed}
    missing = files - image_files()
    assert not missing, f"imported by the app but not copied into the image: {sorted(missing)}"
    assert not {name for name in needed if name.split(".")[0] in ("training", "tools", "train")}, "no training code"
    assert not {f for f in image_files() if f.startswith(("training/", "tools/", "tests/", "train.py"))}
