"""Every environment variable the app, the API and the tools accept, as one typed `Settings`, read after `.env`
and validated: a malformed value stops the process at start with a message naming the variable.

    python -m config.settings                  # the current settings (secrets hidden), or the error
    python -m config.settings --env-example    # .env.example, generated from the fields below

Each field's metadata names its variable, what it means, and its group; `.env.example` and the README's table are
rendered from them (tests/test_settings.py checks both are current). Unset or empty means the default, so Compose
can pass `${VAR:-}` and the defaults live here alone. The environment wins over `.env`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, load_dotenv

from config.paths import DATA_DIR, DEFAULT_MODEL_PATH, ENV_FILE, PROJECT_DIR

GROUPS = {
    "db": "PostgreSQL (outside Compose; Compose sets these for the app itself)",
    "tuning": "Database client tuning",
    "app": "App",
    "access": "Who sees what (DEPLOYMENT.md, 'Visitors and the operator')",
    "training": "Training (development machines only; the app never reads these)",
    "loop": "The loop's scheduled check (make loop; the app never reads these)",
}


def var(env: str, default: Any, what: str, group: str, minimum: float | None = None, secret: bool = False) -> Any:
    """A settings field: its variable `env`, its default, what it means and its group; `minimum`: the smallest
    number, or for text the shortest length."""
    meta = {"env": env, "what": what, "group": group, "minimum": minimum, "secret": secret}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """The process's configuration. Build it with `settings()`; never read `os.environ` elsewhere."""

    database_url: str | None = var("DATABASE_URL", None, "PostgreSQL DSN; wins over the POSTGRES_* variables", "db")
    postgres_host: str | None = var(
        "POSTGRES_HOST", None, "connect to this server; unset with no DATABASE_URL: an embedded PostgreSQL", "db"
    )
    postgres_port: int = var("POSTGRES_PORT", 5432, "the server's port", "db", minimum=1)
    postgres_db: str = var("POSTGRES_DB", "mnist", "the database", "db")
    postgres_user: str = var("POSTGRES_USER", "mnist", "the role the app connects as", "db")
    postgres_password: str = var("POSTGRES_PASSWORD", "", "its password (Compose: required)", "db", secret=True)
    embedded_pgdata: Path = var(
        "EMBEDDED_PGDATA", DATA_DIR / "postgres", "the embedded server's data directory (make run, nothing set)", "db"
    )
    db_pool_size: int = var("DB_POOL_SIZE", 4, "pooled connections per app process (opened once, kept)", "tuning", 1)
    db_connect_timeout: int = var("DB_CONNECT_TIMEOUT", 3, "seconds before a connection attempt gives up", "tuning", 1)
    db_statement_timeout_ms: int = var(
        "DB_STATEMENT_TIMEOUT_MS", 5000, "a query running longer (ms) is cancelled", "tuning", 1
    )
    db_write_timeout: float = var(
        "DB_WRITE_TIMEOUT", 1.0, "seconds a user's write waits for the database before it is spooled", "tuning", 0.01
    )
    db_read_timeout: float = var(
        "DB_READ_TIMEOUT", 5.0, "seconds History/Stats wait before saying the database is unavailable", "tuning", 0.01
    )
    db_migrate_timeout: float = var(
        "DB_MIGRATE_TIMEOUT",
        30.0,
        "seconds a process's first schema run may take (a big table's migration)",
        "tuning",
        1,
    )
    db_migrate_in_app: int = var(
        "DB_MIGRATE_IN_APP",
        1,
        "1: a process migrates the schema at first use (one at a time); 0: it waits for `python db.py` (a Job)",
        "tuning",
        0,
    )
    db_lock_timeout_ms: int = var(
        "DB_LOCK_TIMEOUT_MS", 1000, "ms a migration's DDL waits for a lock before it gives up and retries", "tuning", 1
    )
    spool_path: Path | None = var(
        "SPOOL_PATH", None, "one file for writes kept while the database is unreachable (one process)", "tuning"
    )
    spool_dir: Path = var("SPOOL_DIR", DATA_DIR, "or: each process (replica) claims its own spool file here", "tuning")
    spool_max_mb: float = var(
        "SPOOL_MAX_MB",
        200,
        "a spool file's cap: past it a write is refused, said so (~100k predictions)",
        "tuning",
        0.01,
    )
    model_path: Path = var("MODEL_PATH", DEFAULT_MODEL_PATH, "the checkpoint the app serves", "app")
    torch_threads: int = var("TORCH_THREADS", 1, "intra-op threads per inference (1 keeps latency steady)", "app", 1)
    image_memory_mb: float = var(
        "IMAGE_MEMORY_MB",
        160.0,
        "MB the image requests in flight (page and API) may take at once per process; the worst image ~110 MB",
        "app",
        1,
    )
    image_wait_seconds: float = var(
        "IMAGE_WAIT_SECONDS", 10.0, "how long a request waits for a slot before it is refused (API: 503)", "app", 0.0
    )
    export_concurrency: int = var("EXPORT_CONCURRENCY", 2, "CSV exports at once per process; more get 429", "app", 1)
    retention_days: float | None = var(
        "RETENTION_DAYS", None, "`python db.py` (make prune) deletes older predictions; unset: keep", "app", 0.01
    )
    min_new_labels: int = var(
        "MIN_NEW_LABELS", 200, "make loop: trusted labels since the production model was made, to retrain", "loop", 1
    )
    loop_max_error_rate: float = var(
        "LOOP_MAX_ERROR_RATE", 0.10, "make loop: ...and the feedback error rate over the window above this", "loop", 0.0
    )
    loop_max_not_digit_shift: float = var(
        "LOOP_MAX_NOT_DIGIT_SHIFT", 0.10, "...or its not-a-digit share this far from the weeks before", "loop", 0.0
    )
    loop_window_days: float = var("LOOP_WINDOW_DAYS", 7.0, "make loop: the recent window, in days", "loop", 0.01)
    max_labels_per_client: int = var(
        "MAX_LABELS_PER_CLIENT", 50, "a retraining set takes at most this many labels from one labeller", "loop", 1
    )
    label_hold_confidence: float = var(
        "LABEL_HOLD_CONFIDENCE", 0.99, "a label contradicting an answer this sure is held for review", "loop", 0.5
    )
    label_corroboration: int = var(
        "LABEL_CORROBORATION", 5, "...unless this many labellers made the same correction", "loop", 1
    )
    auto_promote: int = var(
        "AUTO_PROMOTE", 0, "make loop: 1 ships a candidate that passes the gate; 0 leaves it", "loop", 0
    )
    operator_password: str | None = var(
        "OPERATOR_PASSWORD",
        None,
        "the operator's sign-in on History and the export (>= 12 characters); unset: no operator view, no export",
        "access",
        minimum=12,
        secret=True,
    )
    operator_password_file: Path | None = var(
        "OPERATOR_PASSWORD_FILE",
        None,
        "or: a file holding it (Compose mounts secrets/operator_password, which Prometheus reads too)",
        "access",
    )
    operator_max_attempts: int = var(
        "OPERATOR_MAX_ATTEMPTS", 5, "wrong passwords per client before it must wait (429)...", "access", 1
    )
    operator_lockout_seconds: float = var(
        "OPERATOR_LOCKOUT_SECONDS", 300.0, "...until the oldest of them is this old", "access", 1
    )
    predict_limit_per_minute: int = var(
        "PREDICT_LIMIT_PER_MINUTE", 60, "predictions one client may make a minute (0: no limit)", "access", 0
    )
    upload_limit_per_minute: int = var(
        "UPLOAD_LIMIT_PER_MINUTE", 20, "uploads one client may send a minute (0: no limit)", "access", 0
    )
    api_limit_per_minute: int = var(
        "API_LIMIT_PER_MINUTE", 120, "POST /api/predict per client a minute (0: no limit)", "access", 0
    )
    trusted_proxies: str = var(
        "TRUSTED_PROXIES", "", "proxies whose X-Forwarded-For is believed (comma-separated addresses/CIDRs)", "access"
    )
    mlflow_tracking_uri: str | None = var(
        "MLFLOW_TRACKING_URI", None, "the tracking store and registry (unset: sqlite under mlruns/)", "training"
    )
    mlflow_experiment_name: str = var(
        "MLFLOW_EXPERIMENT_NAME", "mnist-digit-classifier", "the experiment runs are recorded in", "training"
    )
    mnist_dir: Path | None = var(
        "MNIST_DIR", None, "offline: a folder with the four MNIST IDX files (.gz or not); unset: download", "training"
    )

    def database_key(self) -> tuple[Any, ...]:
        """What decides which database a handle talks to and where its spool is (a handle per distinct key)."""
        return tuple(
            getattr(self, f.name) for f in FIELDS if f.name.startswith(("database", "postgres", "db_", "spool"))
        )


# Read by Compose, the Caddyfile, deploy/*.sh or the tests, never by the app's Python: known, so `.env` may hold them.
OTHER_VARIABLES = {
    "APP_DB_USER": "Compose: the app's own role (deploy/db-init.sh makes it; POSTGRES_USER is then the superuser)",
    "APP_DB_PASSWORD": "Compose: its password (required)",
    "APP_REPLICAS": "Compose: app processes (default 1)",
    "APP_TAG": "Compose: the image tag (deploy/deploy.sh sets the commit it ships)",
    "DOMAIN": "Compose: Caddy serves HTTPS for it; unset: plain HTTP on port 80",
    "POSTGRES_MAX_CONNECTIONS": "Compose: >= replicas x (DB_POOL_SIZE + 2) + 5 (default 100)",
    "GRAFANA_PASSWORD": "Compose: Grafana's admin password (required; the profile monitoring runs Grafana)",
    "ALERT_WEBHOOK_URL": "Compose profile monitoring: where Alertmanager sends alerts (an ntfy topic URL, a relay)",
    "SITE_ADDRESS": "Caddyfile: a domain, ':80', or 'http://127.0.0.1:8080'",
    "PROXY_BIND": "Caddyfile: interfaces Caddy listens on",
    "APP_UPSTREAMS": "Caddyfile: dns (every address of APP_HOST) or static (APP_STATIC)",
    "APP_HOST": "Caddyfile: the name 'dns' looks up (default app)",
    "APP_PORT": "Caddyfile: the replicas' port (default 8501)",
    "APP_STATIC": "Caddyfile: 'static' upstreams, space-separated host:port",
    "READY_SECONDS": "deploy/deploy.sh: how long new replicas may take to be healthy (default 300)",
    "DRAIN_SECONDS": "deploy/deploy.sh: SIGTERM grace for the old replicas' answers in flight (default 30)",
    "BACKUP_DIR": "deploy/backup.sh: where dumps go",
    "BACKUP_KEEP": "deploy/backup.sh: dumps kept",
    "BACKUP_REMOTE": "deploy/backup.sh: rclone remote for off-site copies",
    "BACKUP_SOURCE": "deploy/backup.sh: compose on the server",
    "BACKUP_ALERT_CMD": "deploy/backup.sh: run on a failed backup",
    "BACKUP_ALERTMANAGER": "deploy/backup.sh: where a failed backup fires (default http://127.0.0.1:9093; off)",
    "MALLOC_ARENA_MAX": "glibc: fewer malloc arenas (the image and make run set 2)",
    "FORWARDED_ALLOW_IPS": "uvicorn: peers whose X-Forwarded-For it applies (the image and make run set it empty)",
    "TEST_DATABASE_URL": "tests: an admin DSN for throwaway databases; unset: an embedded server",
    "CHROMIUM_PATH": "tests: the browser Playwright drives (default /usr/bin/chromium)",
}


# Variables that were replaced: a `.env` or an environment still setting the old name is told the new one.
RENAMED = {"DECODE_CONCURRENCY": "IMAGE_MEMORY_MB"}


class SettingsError(ValueError):
    """A setting that cannot work; the message names the variable."""


FIELDS = dataclasses.fields(Settings)
TYPES = typing.get_type_hints(Settings)
VARIABLES = {f.metadata["env"]: f for f in FIELDS}


def _number(name: str, raw: str, kind: type, minimum: float | None) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name} must be {what}, not {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, not {raw!r}.")
    return value


def parse(name: str, raw: str | None) -> Any:
    """One variable's value from its text (None or empty: the default), or SettingsError naming it."""
    spec = VARIABLES[name]
    if raw is None or raw.strip() == "":
        return spec.default
    raw = raw.strip()
    kind = TYPES[spec.name]
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)  # X | None -> X
    if base in (int, float):
        return _number(name, raw, base, spec.metadata["minimum"])
    if base is Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else PROJECT_DIR / path
    shortest = spec.metadata["minimum"]  # for text: its length
    if shortest is not None and len(raw) < shortest:
        raise SettingsError(
            f"{name} is {len(raw)} characters long; use at least {shortest:g} (or unset it: {spec.metadata['what']})."
        )
    return raw


@functools.cache
def load_env(path: Path = ENV_FILE) -> None:
    """`.env` into the environment, once per process (the environment wins over it)."""
    load_dotenv(path, override=False)


def _password_from_file(values: dict[str, str | None]) -> dict[str, str | None]:
    """OPERATOR_PASSWORD_FILE's content stands for OPERATOR_PASSWORD: one copy of the secret on a server, mounted
    read-only into the app and into Prometheus, never in a data volume or a process listing."""
    path = parse("OPERATOR_PASSWORD_FILE", values["OPERATOR_PASSWORD_FILE"])
    if path is None:
        return values
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"OPERATOR_PASSWORD_FILE names {str(path)!r}, which cannot be read ({exc}).") from None
    given = (values["OPERATOR_PASSWORD"] or "").strip()
    if given and text and given != text:
        raise SettingsError(
            "OPERATOR_PASSWORD and the file OPERATOR_PASSWORD_FILE names hold different passwords: keep one (the file)."
        )
    return {**values, "OPERATOR_PASSWORD": text or given}


@functools.lru_cache(maxsize=8)
def _build(raw: tuple[str | None, ...]) -> Settings:
    values = _password_from_file(dict(zip(VARIABLES, raw)))
    return Settings(**{spec.name: parse(name, values[name]) for name, spec in VARIABLES.items()})


def settings() -> Settings:
    """The current settings: `.env` loaded once, each variable parsed once per value (a test that changes the
    environment gets the new value; a server's never changes). Raises SettingsError naming a malformed variable."""
    load_env()
    return _build(tuple(os.environ.get(name) for name in VARIABLES))


def unknown_in_env_file(path: Path = ENV_FILE) -> list[str]:
    """Variables `.env` sets that nothing here reads: a typo (DB_POOLSIZE) would otherwise be ignored in silence."""
    if not path.is_file():
        return []
    return sorted(name for name in dotenv_values(path) if name not in VARIABLES and name not in OTHER_VARIABLES)


def uvicorn_forwarded_allow_ips() -> str:
    """The peers uvicorn itself takes X-Forwarded-For from, before the app sees a request: uvicorn reads this when
    the server is made, before server.py is imported, and trusts loopback when it is unset."""
    return os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def check() -> Settings:
    """What a process runs at start: every variable parsed, and `.env` free of unknown names."""
    current = settings()
    renamed = sorted(name for name in RENAMED if os.environ.get(name))
    if renamed:
        raise SettingsError(
            ", ".join(f"{old} is replaced by {RENAMED[old]}: set that instead" for old in renamed) + "."
        )
    if unknown := unknown_in_env_file():
        raise SettingsError(f"{ENV_FILE.name} sets {', '.join(unknown)}, which nothing reads (a typo?).")
    return current


def shown(value: Any) -> str:
    if isinstance(value, Path):
        try:
            return str(value.relative_to(PROJECT_DIR))
        except ValueError:
            return str(value)
    return "" if value is None else str(value)


def env_example() -> str:
    """`.env.example`: every variable with what it means and its default, commented out unless Compose needs it
    set. Comments stand on their own lines: Compose's `.env` parser reads an inline "# ..." as part of the value."""
    lines = [
        "# Generated by `python -m config.settings --env-example` from config/settings.py: edit there, not here.",
        "# Copy to .env and fill in. The environment wins over .env; unset or empty means the default shown.",
        "# Generate passwords with:  openssl rand -base64 32 | tr -d '/+=' | cut -c1-32",
        "# Compose: POSTGRES_USER is the superuser, used only to create the app's role (deploy/db-init.sh); the app",
        "# connects as APP_DB_USER, the owner of its schema and nothing more.",
    ]
    required = {
        "POSTGRES_PASSWORD": "change-me-to-a-long-random-password",
        "APP_DB_USER": "mnist_app",
        "APP_DB_PASSWORD": "change-me-to-another-long-random-password",
        "GRAFANA_PASSWORD": "change-me-to-a-third-long-random-password",
    }
    entries = [
        (spec.metadata["group"], name, spec.metadata["what"], shown(spec.default)) for name, spec in VARIABLES.items()
    ]
    entries += [("other", name, what, "") for name, what in OTHER_VARIABLES.items()]
    titles = {**GROUPS, "other": "Compose, Caddy, deploy scripts and tests (the app's Python never reads these)"}
    for group, title in titles.items():
        lines += ["", f"# --- {title}"]
        for _, name, what, default in (entry for entry in entries if entry[0] == group):
            lines.append(f"# {name}: {what}")
            lines.append(f"{name}={required[name]}" if name in required else f"# {name}={default}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's settings table (between its settings markers)."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, spec in VARIABLES.items():
        default = "unset" if spec.default is None else f"`{shown(spec.default)}`" if shown(spec.default) else "empty"
        rows.append(f"| `{name}` | {default} | {spec.metadata['what']} |")
    rows += [f"| `{name}` | | {what} |" for name, what in OTHER_VARIABLES.items()]
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if "--env-example" in argv:
        print(env_example(), end="")
        return 0
    try:
        current = check()
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    for name, spec in VARIABLES.items():
        value = getattr(current, spec.name)
        print(f"{name}={'***' if spec.metadata['secret'] and value else shown(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
