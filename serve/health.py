"""Readiness: whether this process can serve a user now, part by part (GET /readyz in server.py).

    curl -s http://127.0.0.1:8501/readyz     # 200 {"ready": true, ...}, or 503 and which part failed

Ready means the model is loaded and the database answers with the schema in place (spooled writes replayed). Each
check is bounded (READY_TIMEOUT seconds), so a hung database gives a 503, never a hung probe. The deploy script,
the image's and Compose's healthchecks and CI's smoke test use it; /_stcore/health stays Streamlit's liveness,
which Caddy checks (every replica shares one database: routing on its readiness would turn a database outage
into a full one while each replica can still answer and spool).
"""

from __future__ import annotations

from inference.network import ModelLoadError
from serve import resources
from storage.pool import DatabaseUnavailable

READY_TIMEOUT = 3.0


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {"model": ..., "database": ...}): "ok", or what is wrong in words an operator can act on."""
    checks: dict[str, str] = {}
    try:
        checks["model"] = f"ok ({resources.checkpoint().version})"
    except ModelLoadError as exc:
        checks["model"] = f"not loaded: {exc}"
    try:
        resources.database().check_ready(READY_TIMEOUT)
        checks["database"] = "ok"
    except DatabaseUnavailable as exc:
        checks["database"] = f"not ready: {exc}"
    return all(value.startswith("ok") for value in checks.values()), checks
