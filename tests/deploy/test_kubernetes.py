"""deploy/kubernetes keeps its promises: every overlay builds and validates strictly (Kubernetes 1.33), and the app's
workload has what running it beyond one server needs (probes, limits, a spool per replica, Secrets, sticky sessions,
an HPA, a PDB, NetworkPolicies, migrations as a Job). Custom kinds, which no bundled schema covers, are checked here
field by field: Traefik's IngressRoute and Middleware, CloudNativePG's Cluster and ScheduledBackup, the Prometheus
Operator's ServiceMonitor and PrometheusRule.

    pytest tests/deploy/test_kubernetes.py
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
import yaml

from config.paths import PROJECT_DIR
from tools import kubernetes

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None and shutil.which("kustomize") is None, reason="kubectl or kustomize not installed"
)
ROOT = PROJECT_DIR


@pytest.fixture(scope="module")
def built() -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """Every overlay's objects by (kind, name)."""
    return {
        overlay.name: {(doc["kind"], doc["metadata"]["name"]): doc for doc in kubernetes.build(overlay)}
        for overlay in kubernetes.OVERLAYS
    }


def test_every_overlay_builds_and_validates_strictly(built: dict[str, Any]) -> None:
    assert set(built) == {"cloudnativepg", "external-db"}
    for overlay in kubernetes.OVERLAYS:
        assert kubernetes.problems(list(built[overlay.name].values())) == [], overlay.name
    assert kubernetes.KUBERNETES_VERSION >= "1.33"


def app_container(objects: dict[tuple[str, str], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    statefulset = objects[("StatefulSet", "mnist-app")]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return statefulset, container


def test_the_app_has_probes_limits_and_the_restricted_security_context(built: dict[str, Any]) -> None:
    for objects in built.values():
        statefulset, app = app_container(objects)
        assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert app["livenessProbe"]["httpGet"]["path"] == "/_stcore/health"
        assert app["startupProbe"]["failureThreshold"] * app["startupProbe"]["periodSeconds"] >= 120, "the model load"
        assert app["resources"]["requests"]["cpu"] and app["resources"]["limits"]["memory"] == "1200Mi"
        pod = statefulset["spec"]["template"]["spec"]
        assert (
            pod["securityContext"]["runAsNonRoot"]
            and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        )
        context = app["securityContext"]
        assert context["readOnlyRootFilesystem"] and context["capabilities"]["drop"] == ["ALL"]
        assert context["allowPrivilegeEscalation"] is False
        assert (
            objects[("Namespace", "mnist")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        )
        assert "@sha256:" in app["image"], "an image by digest, as CI tested it"


def test_each_replica_keeps_its_spool_on_a_claim_of_its_own(built: dict[str, Any]) -> None:
    for objects in built.values():
        statefulset, app = app_container(objects)
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        env = {item["name"]: item for item in app["env"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in app["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == env["SPOOL_DIR"]["value"], "the spool lives on the claim"
        assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
        assert (ROOT / "deploy" / "kubernetes" / "replay-spool.sh").exists(), "a scaled-away claim is replayed"


def test_passwords_come_from_secrets_never_from_the_manifests(built: dict[str, Any]) -> None:
    for name, objects in built.items():
        _, app = app_container(objects)
        env = {item["name"]: item for item in app["env"]}
        assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"]
        operator = next(
            v
            for v in objects[("StatefulSet", "mnist-app")]["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "operator"
        )
        assert operator["secret"]["secretName"] == "mnist-operator" and env["OPERATOR_PASSWORD_FILE"][
            "value"
        ].startswith("/run/secrets/")
        assert not any(kind == "Secret" for kind, _ in objects), "Secrets are made by the operator or CloudNativePG"
        for container in (app, objects[("Job", "mnist-migrate")]["spec"]["template"]["spec"]["containers"][0]):
            literal = [
                e["name"] for e in container["env"] if "value" in e and re.search("PASSWORD|DATABASE_URL", e["name"])
            ]
            assert literal == [] or literal == ["OPERATOR_PASSWORD_FILE"], f"{name}: {literal} written in the manifest"
    cnpg = built["cloudnativepg"]
    assert app_container(cnpg)[1]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "mnist-db-app", "CNPG's secret"


def test_sticky_sessions_security_headers_and_internal_paths_off_the_public_route(built: dict[str, Any]) -> None:
    for objects in built.values():
        route = objects[("IngressRoute", "mnist")]["spec"]["routes"][0]
        assert route["services"][0]["sticky"]["cookie"]["httpOnly"] and route["services"][0]["name"] == "mnist-app"
        for internal in ("/metrics", "/readyz", "/export", "/_stcore/metrics"):
            assert re.search(rf"!Path(Prefix)?\(`{re.escape(internal)}`\)", route["match"]), internal
        headers = objects[("Middleware", "mnist-security-headers")]["spec"]["headers"]
        assert headers["contentTypeNosniff"] and headers["frameDeny"] and headers["stsSeconds"] > 0
        assert route["middlewares"] == [{"name": "mnist-security-headers"}]
    traefik = yaml.safe_load((kubernetes.KUBERNETES / "k3s" / "traefik-config.yaml").read_text())
    values = yaml.safe_load(traefik["spec"]["valuesContent"])
    assert values["ports"]["websecure"]["transport"]["respondingTimeouts"]["readTimeout"] == 0, "websockets stay open"


def test_an_hpa_a_pdb_and_network_policies(built: dict[str, Any]) -> None:
    for name, objects in built.items():
        hpa = objects[("HorizontalPodAutoscaler", "mnist-app")]["spec"]
        assert hpa["scaleTargetRef"]["kind"] == "StatefulSet" and hpa["metrics"][0]["resource"]["name"] == "cpu"
        assert hpa["minReplicas"] >= 2
        assert objects[("PodDisruptionBudget", "mnist-app")]["spec"]["maxUnavailable"] == 1
        assert objects[("NetworkPolicy", "default-deny-ingress")]["spec"] == {
            "podSelector": {},
            "policyTypes": ["Ingress"],
        }
        sources = objects[("NetworkPolicy", "mnist-app-ingress")]["spec"]["ingress"]
        allowed = {rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in sources}
        assert allowed == {"traefik", "prometheus"}, "only the ingress and Prometheus reach the app"
    db = built["cloudnativepg"][("NetworkPolicy", "mnist-db-ingress")]["spec"]["ingress"][0]["from"]
    assert db[0]["podSelector"]["matchExpressions"][0]["values"] == ["mnist-app", "mnist-migrate"], "only the app"
    egress = built["cloudnativepg"][("NetworkPolicy", "mnist-app-egress")]["spec"]["egress"][1]["to"]
    assert egress == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "mnist-db"}}}]


def test_migrations_run_once_as_a_job_and_the_pods_wait_for_it(built: dict[str, Any]) -> None:
    for objects in built.values():
        job = objects[("Job", "mnist-migrate")]["spec"]["template"]["spec"]["containers"][0]
        assert job["command"] == ["python", "db.py"]
        _, app = app_container(objects)
        assert {item["name"]: item.get("value") for item in app["env"]}["DB_MIGRATE_IN_APP"] == "0"


def claims(pod: dict[str, Any]) -> dict[str, str | None]:
    """A pod spec's volumes: name -> the claim it mounts (None for other kinds)."""
    return {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}


def test_the_loop_runs_nightly_and_promotes_into_the_volume_the_app_serves_from(built: dict[str, Any]) -> None:
    """make loop as a CronJob (the training image), one at a time; the model it promotes is the file the app's pods
    read (read-only) from the same claim, so they swap without a restart; the same database as the app."""
    for objects in built.values():
        cron = objects[("CronJob", "mnist-loop")]["spec"]
        assert cron["concurrencyPolicy"] == "Forbid" and cron["timeZone"] == "Etc/UTC"
        pod = cron["jobTemplate"]["spec"]["template"]["spec"]
        (loop,) = pod["containers"]
        assert loop["command"][:3] == ["python", "train.py", "--retrain-if-needed"]
        assert "@sha256:" in loop["image"] and "mnist-loop" in loop["image"]
        loop_env = {item["name"]: item for item in loop["env"]}
        statefulset, app = app_container(objects)
        app_env = {item["name"]: item for item in app["env"]}
        assert loop_env["MODEL_PATH"] == app_env["MODEL_PATH"], "the loop promotes the file the app serves"
        assert loop_env["DATABASE_URL"] == app_env["DATABASE_URL"], "the labels it reads are the app's"
        assert loop_env["MLFLOW_TRACKING_URI"]["value"].startswith("sqlite:////models/"), "the registry persists"
        assert claims(pod)["models"] == claims(statefulset["spec"]["template"]["spec"])["models"] == "mnist-models"
        app_mount = {m["name"]: m for m in app["volumeMounts"]}["models"]
        assert app_mount["readOnly"] is True and app_env["MODEL_PATH"]["value"].startswith(app_mount["mountPath"])
        assert loop["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
        (seed,) = statefulset["spec"]["template"]["spec"]["initContainers"]
        assert "/app/models/model.pth" in seed["command"][-1], "a new volume starts with the image's model"
    dockerfile = (ROOT / "deploy" / "training.Dockerfile").read_text()
    assert "requirements-dev.txt" in dockerfile and "COPY training/" in dockerfile


def test_cloudnativepg_backs_up_to_object_storage_and_monitoring_reuses_the_compose_files(
    built: dict[str, Any],
) -> None:
    cnpg = built["cloudnativepg"]
    cluster = cnpg[("Cluster", "mnist-db")]["spec"]
    assert cluster["instances"] >= 2 and cluster["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    assert cluster["bootstrap"]["initdb"] == {"database": "mnist", "owner": "mnist_app"}
    assert cnpg[("ScheduledBackup", "mnist-db-nightly")]["spec"]["cluster"]["name"] == "mnist-db"
    for objects in built.values():
        monitor = objects[("ServiceMonitor", "mnist-app")]["spec"]["endpoints"][0]
        assert monitor["path"] == "/metrics" and monitor["basicAuth"]["password"]["name"] == "mnist-operator"
        rule = objects[("PrometheusRule", "mnist-alerts")]["spec"]["groups"]
        assert rule == yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"]
        dashboard = objects[("ConfigMap", "mnist-grafana-dashboard")]["data"]["mnist.json"]
        assert dashboard == (ROOT / "monitoring" / "grafana" / "dashboards" / "mnist.json").read_text()


def test_the_prometheus_rule_file_is_generated_from_alerts_yml() -> None:
    path = kubernetes.KUBERNETES / "components" / "monitoring" / "prometheusrule.yaml"
    assert path.read_text() == kubernetes.prometheus_rule(), "python -m tools.kubernetes rules > " + str(path)
