"""The Compose profile `monitoring`: Prometheus's scrape config and alert rules (promtool where it is installed: the
config, the rules, and the rules' own tests), Grafana's provisioning and dashboard, and that every series they
query is one the app exposes.

    pytest tests/deploy/test_monitoring.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from config.paths import PROJECT_DIR

ROOT = PROJECT_DIR
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "mnist.json"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def exposed_names(database: Any) -> set[str]:
    """The sample names /metrics gives, read from a real render against the test database."""
    from serve import metrics

    text = metrics.render("test").decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def queried_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(mnist_[a-z_]+|up)\b", expression))


def dashboard_expressions() -> dict[str, list[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load(MONITORING / "alerts.yml")["groups"] for rule in group["rules"]}


def test_the_profile_runs_prometheus_alertmanager_and_grafana_on_loopback_only() -> None:
    services = load(ROOT / "docker-compose.yml")["services"]
    for name in ("prometheus", "alertmanager", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], "not started by a plain `docker compose up`"
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), "opened over SSH, never public"
        assert re.search(r":v?\d+\.\d+\.\d+$", service["image"]), "pinned by version"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_the_operator_password_reaches_prometheus_as_a_read_only_file_never_a_copy() -> None:
    compose = load(ROOT / "docker-compose.yml")
    prometheus, app = compose["services"]["prometheus"], compose["services"]["app"]
    assert compose["secrets"]["operator_password"] == {"file": "./secrets/operator_password"}
    assert prometheus["secrets"] == ["operator_password"] and "operator_password" in app["secrets"]
    assert app["environment"]["OPERATOR_PASSWORD_FILE"] == "/run/secrets/operator_password"
    assert "OPERATOR_PASSWORD" not in (prometheus.get("environment") or {}), "not in its environment"
    assert "entrypoint" not in prometheus and "operator_password" not in " ".join(prometheus["command"])
    (job,) = [job for job in load(MONITORING / "prometheus.yml")["scrape_configs"] if job["job_name"] == "mnist-app"]
    assert job["basic_auth"]["password_file"] == "/run/secrets/operator_password", "the mounted secret itself"


def test_what_fires_goes_to_alertmanager_and_on_to_the_operator_s_webhook() -> None:
    (target,) = load(MONITORING / "prometheus.yml")["alerting"]["alertmanagers"][0]["static_configs"]
    assert target["targets"] == ["alertmanager:9093"]
    config = load(MONITORING / "alertmanager.yml")
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"] and receiver["webhook_configs"][0]["send_resolved"]
    service = load(ROOT / "docker-compose.yml")["services"]["alertmanager"]
    assert service["environment"]["ALERT_WEBHOOK_URL"] == "${ALERT_WEBHOOK_URL:-}"
    assert "/tmp" in service["tmpfs"] and service["read_only"], "the URL is written only to the tmpfs"


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool not installed (apt-get install prometheus-alertmanager)"
)
def test_amtool_accepts_the_alertmanager_config() -> None:
    result = subprocess.run(
        ["amtool", "check-config", "alertmanager.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_replica_s_metrics() -> None:
    (job,) = [job for job in load(MONITORING / "prometheus.yml")["scrape_configs"] if job["job_name"] == "mnist-app"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["app"] and sd["type"] == "A" and sd["port"] == 8501, "one target per replica address"
    assert job["basic_auth"]["username"] == "operator" and "password_file" in job["basic_auth"]


def test_the_alerts_cover_database_spool_and_latency() -> None:
    rules = alert_rules()
    assert {"DatabaseDown", "SpoolGrowing", "SpoolNearlyFull", "PredictionLatencyHigh"} <= set(rules)
    assert "mnist_spool_max_bytes" in rules["SpoolNearlyFull"]["expr"] and "0.8" in rules["SpoolNearlyFull"]["expr"]
    assert rules["DatabaseDown"]["for"] == "1m" and "mnist_database_up" in rules["DatabaseDown"]["expr"]
    assert "mnist_spool_depth" in rules["SpoolGrowing"]["expr"]
    assert "histogram_quantile(0.95" in rules["PredictionLatencyHigh"]["expr"]


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    titles = " | ".join(dashboard_expressions()).lower()
    for wanted in (
        "predictions per second",
        "p95 latency",
        "not-a-digit share",
        "feedback accuracy",
        "spool",
        "database up",
    ):
        assert wanted in titles, wanted
    datasource = load(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = load(MONITORING / "grafana" / "provisioning" / "dashboards" / "mnist.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_series_queried_is_one_the_app_exposes(
    database: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", database.dsn)
    monkeypatch.setenv("SPOOL_PATH", str(tmp_path / "spool.jsonl"))
    exposed = exposed_names(database) | {"up"}
    expressions = [e for exprs in dashboard_expressions().values() for e in exprs]
    expressions += [rule["expr"] for rule in alert_rules().values()]
    for expression in expressions:
        unknown = queried_names(expression) - exposed
        assert not unknown, f"{expression!r} queries {unknown}, which /metrics does not give"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.parametrize(
    "command",
    [["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]],
)
def test_promtool_accepts_the_config_and_the_rules_fire_as_written(command: list[str]) -> None:
    result = subprocess.run(["promtool", *command], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
