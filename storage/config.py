"""Where the database is, and every other setting, read from the environment (and `.env`) in one place.

    python -c "from storage.config import configured_dsn; print(configured_dsn())"

In order: `DATABASE_URL`; else `POSTGRES_HOST` (+ `POSTGRES_PORT/DB/USER/PASSWORD`); else an embedded PostgreSQL
(the `pgserver` package) under `data/postgres/`, so a fresh machine needs no server. Variables come from the
environment and from `.env` (python-dotenv; the environment wins).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import psycopg2.extensions
from dotenv import load_dotenv

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"


@functools.cache
def load_env() -> None:
    """`.env` into the environment, once per process (the environment wins over it)."""
    load_dotenv(PROJECT_DIR / ".env", override=False)


def setting(name: str, default: str) -> str:
    """An environment (or `.env`) setting; unset or empty means the default."""
    load_env()
    return os.environ.get(name) or default


def configured_dsn() -> str | None:
    """The DSN the environment (or `.env`) names, or None when nothing is configured."""
    load_env()
    if url := os.environ.get("DATABASE_URL"):
        return url
    if host := os.environ.get("POSTGRES_HOST"):
        return psycopg2.extensions.make_dsn(
            host=host,
            port=setting("POSTGRES_PORT", "5432"),
            dbname=setting("POSTGRES_DB", "mnist"),
            user=setting("POSTGRES_USER", "mnist"),
            password=os.environ.get("POSTGRES_PASSWORD", ""),
        )
    return None


_embedded_servers: dict[Path, Any] = {}


def embedded_dsn(pgdata: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data/postgres/` and return its DSN."""
    import pgserver  # imported here: only the no-config default needs it

    path = (pgdata or Path(setting("EMBEDDED_PGDATA", str(DATA_DIR / "postgres")))).resolve()
    if path not in _embedded_servers:
        path.parent.mkdir(parents=True, exist_ok=True)
        _embedded_servers[path] = pgserver.get_server(path, cleanup_mode="stop")  # stops when this process exits
    return str(_embedded_servers[path].get_uri())


def describe(dsn: str) -> str:
    """The DSN without its password, for logs and the page."""
    params = psycopg2.extensions.parse_dsn(dsn)
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in params.items())
