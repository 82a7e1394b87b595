"""Several app processes behind Caddy on loopback, as `docker compose up --scale app=N` runs them behind the proxy.

    make loadtest REPLICAS=2 KILL_AFTER=20      # the load test through the proxy, replica 1 killed at 20 s
    (tests/deploy/test_replicas.py runs a small one)

`Cluster` starts N `streamlit run server.py` processes on free loopback ports, sharing one database and one spool
folder (each claims its own spool file there, spool.claim), and Debian's `caddy` on the repository's own Caddyfile
in its "static" mode, listening on 127.0.0.1 only. It can kill a replica (SIGKILL, by its PID) and start it again
on the same port, and counts the established connections each replica holds (the users' websockets), which says
which replicas served users. Every process it started is stopped by its PID at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tools import browser

CADDYFILE = browser.ROOT / "Caddyfile"
ROLL_SETTLE_SECONDS = 12.0
STARTUP_SECONDS = 60
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STICKY_COOKIE = "mnist_replica"  # the Caddyfile's lb_policy cookie name


def caddy_path() -> str | None:
    return shutil.which("caddy")


def established_by_port(ports: list[int]) -> dict[int, int]:
    """Open TCP connections accepted on each of `ports` (server side, IPv4 loopback), from /proc/net/tcp."""
    counts = dict.fromkeys(ports, 0)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        port = int(local.split(":")[1], 16)
        if state == "01" and port in counts:  # 01: ESTABLISHED
            counts[port] += 1
    return counts


class Cluster:
    """N app replicas and a Caddy in front of them (a context manager)."""

    def __init__(self, replicas: int, env: dict[str, str], spool_dir: Path) -> None:
        self.count = replicas
        # Caddy on loopback is the proxy here, as Docker's networks are in Compose.
        self.env = {"TRUSTED_PROXIES": "127.0.0.1", **env, "SPOOL_DIR": str(spool_dir)}
        self.env.pop("SPOOL_PATH", None)
        self.ports = [browser.free_port() for _ in range(replicas)]
        self.apps: list[Any] = [None] * replicas  # running_app context managers
        self.proxy_port = browser.free_port()
        self.proxy: subprocess.Popen[bytes] | None = None
        self.peak = dict.fromkeys(self.ports, 0)
        self.kills: list[float] = []
        self.at_kill: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds last seen (a killed process keeps its last reading)
        self.pids: list[list[int]] = [[] for _ in range(replicas)]  # every process each replica has been

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def pid(self, replica: int) -> int:
        return browser.SERVER_PIDS[f"http://127.0.0.1:{self.ports[replica]}"]

    def start_replica(self, replica: int) -> None:
        context = browser.running_app(self.env, port=self.ports[replica])
        context.__enter__()
        self.apps[replica] = context
        self.pids[replica].append(self.pid(replica))

    def sticky_cookies(self, attempts: int = 200) -> list[dict[str, str]]:
        """One value of Caddy's sticky cookie per replica (fresh clients are pinned at random; these pin one to each),
        as Playwright cookies. Used to spread a small test's few users over every replica instead of trusting luck."""
        values: set[str] = set()
        for _ in range(attempts):
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5) as response:
                for header in response.headers.get_all("Set-Cookie") or []:
                    name, _, rest = header.partition("=")
                    if name.strip() == STICKY_COOKIE:
                        values.add(rest.split(";")[0])
            if len(values) == self.count:
                break
        return [{"name": STICKY_COOKIE, "value": value, "url": self.url} for value in sorted(values)]

    def kill(self, replica: int) -> None:
        """SIGKILL, as a crash or an OOM kill: no shutdown code runs."""
        self.at_kill = self.sample()
        os.kill(self.pid(replica), signal.SIGKILL)
        self.kills.append(time.time())

    def roll(self, replica: int) -> None:
        """A rolling update's step: SIGTERM (answers in flight finish; the proxy sends new requests to the others),
        wait for the process to end, start its successor on the same port, wait until it answers, and then until
        the proxy routes to it again (its fail_duration, 10 s in the Caddyfile), as Kubernetes waits for readiness."""
        self.apps[replica].__exit__(None, None, None)
        self.start_replica(replica)
        time.sleep(ROLL_SETTLE_SECONDS)

    def restart(self, replica: int) -> None:
        with contextlib.suppress(Exception):
            self.apps[replica].__exit__(None, None, None)  # reaps the killed process
        self.start_replica(replica)

    def sample(self) -> dict[int, int]:
        """Connections open to each replica now (peaks kept), and each process's CPU time so far."""
        now = established_by_port(self.ports)
        for port, n in now.items():
            self.peak[port] = max(self.peak[port], n)
        for pids in self.pids:
            for pid in pids:
                with contextlib.suppress(OSError):
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return now

    def cpu_seconds(self, replica: int) -> float:
        """CPU time of every process this replica has been (serving users costs seconds; health checks, ~nothing)."""
        return round(sum(self.cpu.get(pid, 0.0) for pid in self.pids[replica]), 1)

    def __enter__(self) -> Cluster:
        if caddy_path() is None:
            raise RuntimeError("caddy not found: apt-get install caddy")
        for replica in range(self.count):
            self.start_replica(replica)
        env = {
            **os.environ,
            "SITE_ADDRESS": self.url,
            "PROXY_BIND_MODE": "listed",
            "PROXY_BIND": "127.0.0.1",
            "APP_UPSTREAMS": "static",
            "APP_STATIC": " ".join(f"127.0.0.1:{port}" for port in self.ports),
            "XDG_DATA_HOME": str(browser.ARTIFACTS / "caddy-data"),
            "XDG_CONFIG_HOME": str(browser.ARTIFACTS / "caddy-config"),
        }
        log = open(browser.ARTIFACTS / f"caddy-{self.proxy_port}.log", "w")
        self.proxy = subprocess.Popen(
            [str(caddy_path()), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.proxy.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"caddy did not start (see {log.name})")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.proxy is not None:
            self.proxy.terminate()
            try:
                self.proxy.wait(10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        for context in self.apps:
            if context is not None:
                with contextlib.suppress(Exception):
                    context.__exit__(None, None, None)
