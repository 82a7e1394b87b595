"""The deployment files keep their promises: Compose validates, non-root image, healthchecks, no public database."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.architecture import closure, graph, modules

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_ENV = {"POSTGRES_PASSWORD": "only-for-validation", "PATH": "/usr/bin:/bin:/usr/local/bin"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_docker_compose_config_accepts_the_file() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    for args in (["config", "-q"], ["--profile", "https", "config", "-q"]):
        result = subprocess.run(["docker-compose", *args], cwd=ROOT, env=COMPOSE_ENV, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_password() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed")
    env = {"PATH": COMPOSE_ENV["PATH"]}
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_database_is_private_persistent_and_healthchecked() -> None:
    services = compose()["services"]
    database = services["db"]
    assert database["image"].startswith("postgres:17")
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
        elif "PASSWORD" in key:
            assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?.*\}", value), f"{key} must come from .env"


def test_caddy_is_the_only_door_and_the_app_scales() -> None:
    services = compose()["services"]
    caddy, app = services["caddy"], services["app"]
    assert set(caddy["ports"]) == {"80:80", "443:443"}
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"], "the Caddyfile the replica test runs"
    assert caddy["environment"]["APP_UPSTREAMS"] == "dns", "every replica of `app`, found by DNS"
    assert "ports" not in app and "container_name" not in app, "a published port or a fixed name stops --scale"
    assert app["environment"]["SPOOL_DIR"] == "/app/data", "each replica claims its own spool in the volume"


def test_image_runs_as_non_root_with_a_healthcheck_and_cpu_torch() -> None:
    text = dockerfile()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*_stcore/health", text, flags=re.M)
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


def test_env_example_documents_every_variable_the_code_reads() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    # The app's modules and the packages it runs on (the tools' and tests' own variables are theirs).
    code = "".join(path.read_text() for name, path in modules().items() if name.split(".")[0] not in ("tools", "tests"))
    read = set(re.findall(r"""(?:environ\.get|setting|per_minute|getenv)\(\s*["']([A-Z][A-Z0-9_]+)""", code))
    assert {"DATABASE_URL", "DB_POOL_SIZE", "OPERATOR_PASSWORD"} <= read, "the scan finds what the code reads"
    read |= set(re.findall(r"""environ\[["']([A-Z][A-Z0-9_]+)""", code))
    compose_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    missing = (read | compose_vars) - documented
    assert not missing, f"undocumented variables: {sorted(missing)}"


def test_github_workflow_gates_on_evaluation_and_deploys_only_from_main() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    assert {"lint", "typecheck", "test", "evaluate", "image", "deploy"} <= set(jobs)
    assert "postgres" in jobs["test"]["services"]
    gate = " ".join(step.get("run", "") for step in jobs["evaluate"]["steps"])
    assert "0.995" in gate
    deploy = jobs["deploy"]
    assert "refs/heads/main" in deploy["if"] and set(deploy["needs"]) >= {"test", "evaluate"}
    script = deploy["steps"][-1]["run"]
    assert "secrets." not in script, "secrets reach the script through env, never inline"
    assert "rolling back" in script and "Health.Status" in script


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
