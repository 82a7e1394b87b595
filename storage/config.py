"""Where the database is: the DSN the settings (config.settings) name, or an embedded PostgreSQL.

    python -c "from storage.config import configured_dsn; print(configured_dsn())"

In order: `DATABASE_URL`; else `POSTGRES_HOST` (+ `POSTGRES_PORT/DB/USER/PASSWORD`); else an embedded PostgreSQL
(the `pgserver` package) under `data/postgres/`, so a fresh machine needs no server. Variables come from the
environment and from `.env` (python-dotenv; the environment wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2.extensions

from config.settings import settings


def configured_dsn() -> str | None:
    """The DSN the environment (or `.env`) names, or None when nothing is configured."""
    current = settings()
    if current.database_url:
        return current.database_url
    if current.postgres_host:
        return psycopg2.extensions.make_dsn(
            host=current.postgres_host,
            port=current.postgres_port,
            dbname=current.postgres_db,
            user=current.postgres_user,
            password=current.postgres_password,
        )
    return None


_embedded_servers: dict[Path, Any] = {}


def embedded_dsn(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data/postgres/` and return its DSN."""
    import pgserver  # imported here: only the no-config default needs it

    path = (pgdata or settings().embedded_pgdata).resolve()
    if path not in _embedded_servers:
        path.parent.mkdir(parents=True, exist_ok=True)
        _embedded_servers[path] = pgserver.get_server(path, cleanup_mode="stop")  # stops when this process exits
    return str(_embedded_servers[path].get_uri())


def describe(dsn: str) -> str:
    """The DSN without its password, for logs and the page."""
    params = psycopg2.extensions.parse_dsn(dsn)
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in params.items())
