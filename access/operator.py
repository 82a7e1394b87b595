"""The operator: one password (`OPERATOR_PASSWORD`, from the environment or .env), checked in constant time, with
wrong guesses throttled per client; and the short-lived links a signed-in History page downloads the export with.

    python -c "from access.operator import password; print(password() is not None)"

With no password set there is no operator view and no export. A password shorter than config.settings allows
(12 characters) is refused at start (server.py), with the reason.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets
import threading
import time

from access.limits import Throttle
from config.settings import SettingsError, settings

USER = "operator"  # the HTTP Basic user name: curl -u operator:$OPERATOR_PASSWORD
EXPORT_LINK_SECONDS = 300


class OperatorConfigError(ValueError):
    """OPERATOR_PASSWORD is set but unusable."""


def password() -> str | None:
    """The operator password, or None when none is set; raises OperatorConfigError when it is too short."""
    try:
        return settings().operator_password
    except SettingsError as exc:
        raise OperatorConfigError(str(exc)) from None


def is_password(given: str, expected: str) -> bool:
    """Constant time: how long the comparison takes says nothing about how much of `given` was right."""
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None when there is none or it is malformed."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, given) if sep else None


# Wrong passwords, per client, shared by the page's sign-in and the export's HTTP Basic (one process).
@functools.cache
def throttle() -> Throttle:
    current = settings()
    return Throttle(current.operator_max_attempts, current.operator_lockout_seconds)


class ExportLinks:
    """One-use links to the export for a signed-in page: a random token, valid `EXPORT_LINK_SECONDS`, spent by the
    download it starts (a link left in a browser's history opens nothing later)."""

    def __init__(self, lifetime: float = EXPORT_LINK_SECONDS) -> None:
        self.lifetime = lifetime
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: until for t, until in self._tokens.items() if until > now}
            self._tokens[token] = now + self.lifetime
        return token

    def spend(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            until = self._tokens.pop(token, None)
        return until is not None and until > time.monotonic()


export_links = ExportLinks()
