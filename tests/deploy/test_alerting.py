"""An alert reaches a person: a rule firing in a real Prometheus goes through a real Alertmanager, started by the
container's own entrypoint (monitoring/alertmanager-start.sh) on monitoring/alertmanager.yml, to a webhook receiver
on loopback; a failed backup (deploy/backup.sh) takes the same path, and the next good one resolves it.

    pytest tests/deploy/test_alerting.py        # Debian's prometheus and prometheus-alertmanager, on 127.0.0.1 only

Only timings change from what ships: the rules' `for:` and the route's group_wait are shortened, so the test waits
seconds rather than minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config.paths import PROJECT_DIR
from tools import browser
from tools.processes import stop, wait_for

MONITORING = PROJECT_DIR / "monitoring"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        ALERTMANAGER is None or PROMETHEUS is None,
        reason="apt-get install prometheus prometheus-alertmanager (their servers run on loopback here)",
    ),
]


class Receiver(BaseHTTPRequestHandler):
    """The operator's webhook: keeps every body Alertmanager posts, with the path it was posted to."""

    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        Receiver.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process of ours, stopped by its PID however the test ends."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            stop(process)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alerts(name: str, status: str) -> list[dict[str, Any]]:
    return [
        alert
        for _, body in Receiver.received
        for alert in body["alerts"]
        if alert["labels"]["alertname"] == name and alert["status"] == status
    ]


def prometheus_config(tmp: Path, alertmanager_port: int) -> Path:
    """The shipped rules with `for: 0s`, scraping a replica that is down (nothing listens on its port)."""
    rules = tmp / "alerts.yml"
    text = (MONITORING / "alerts.yml").read_text()
    rules.write_text(
        "\n".join(line.split("for:")[0] + "for: 0s" if "for:" in line else line for line in text.split("\n"))
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "mnist-app", "static_configs": [{"targets": [f"127.0.0.1:{browser.free_port()}"]}]}
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_a_firing_rule_and_a_failed_backup_reach_the_operator_s_webhook(tmp_path: Path) -> None:
    Receiver.received = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    shipped = tmp_path / "alertmanager.yml"
    shipped.write_text((MONITORING / "alertmanager.yml").read_text().replace("group_wait: 30s", "group_wait: 1s"))
    rendered = tmp_path / "rendered.yml"
    url = f"http://127.0.0.1:{hook.server_port}/ntfy-topic?title=MNIST&priority=high"  # & and ? survive the render
    am_port, prom_port = browser.free_port(), browser.free_port()
    am_env = {"ALERT_WEBHOOK_URL": url, "ALERTMANAGER": str(ALERTMANAGER),
              "ALERTMANAGER_CONFIG_IN": str(shipped), "ALERTMANAGER_CONFIG_OUT": str(rendered)}  # fmt: skip
    am_args = ["sh", str(MONITORING / "alertmanager-start.sh"), f"--storage.path={tmp_path / 'am'}",
               f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]  # fmt: skip
    prom_args = [str(PROMETHEUS), f"--config.file={prometheus_config(tmp_path, am_port)}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"]  # fmt: skip
    try:
        with started(am_args, am_env, tmp_path / "alertmanager.log"):
            assert wait_for(lambda: answers(f"http://127.0.0.1:{am_port}/-/ready"), 30), (
                tmp_path / "alertmanager.log"
            ).read_text()[-2000:]
            assert stat.S_IMODE(rendered.stat().st_mode) == 0o600 and url in rendered.read_text()
            with started(prom_args, {}, tmp_path / "prometheus.log"):
                fired = wait_for(lambda: bool(alerts("ReplicaDown", "firing")), 60)
                assert fired, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert Receiver.received[0][0] == "/ntfy-topic?title=MNIST&priority=high"
            (down,) = alerts("ReplicaDown", "firing")[:1]
            assert down["labels"]["severity"] == "critical" and "does not answer" in down["annotations"]["summary"]

            backup = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
                      "BACKUP_DIR": str(tmp_path / "backups"),
                      "BACKUP_ALERTMANAGER": f"http://127.0.0.1:{am_port}"}  # fmt: skip
            script = ["bash", str(PROJECT_DIR / "deploy" / "backup.sh")]
            failed = subprocess.run(script, env=backup, capture_output=True, text=True, timeout=120)
            assert failed.returncode == 1 and "could not reach Alertmanager" not in failed.stderr
            assert wait_for(lambda: bool(alerts("BackupFailed", "firing")), 30), "the failed backup reached nobody"
            (backup_alert,) = alerts("BackupFailed", "firing")[:1]
            assert backup_alert["annotations"]["summary"].startswith("MNIST backup failed:")
    finally:
        hook.shutdown()


def test_without_a_webhook_url_alertmanager_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ALERT_WEBHOOK_URL"}
    env.update(ALERTMANAGER="/bin/false", ALERTMANAGER_CONFIG_OUT=str(tmp_path / "out.yml"),
               ALERTMANAGER_CONFIG_IN=str(MONITORING / "alertmanager.yml"))  # fmt: skip
    result = subprocess.run(["sh", str(MONITORING / "alertmanager-start.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "set ALERT_WEBHOOK_URL" in result.stderr
    assert not (tmp_path / "out.yml").exists()
