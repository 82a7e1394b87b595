"""Who a client is: the address limits and throttles count by, and the anonymous visitor id its browser keeps.

    python -c "from access.clients import client_address as c; print(c('10.0.0.2', '203.0.113.9', '10.0.0.0/8'))"

Behind Caddy every request comes from the proxy, so the client's own address is in X-Forwarded-For; that header is
believed only from an address in `TRUSTED_PROXIES` (anyone else could write it). The visitor id is a random token
in an HttpOnly cookie (`mnist_visitor`), set by server.py on the first page load: not a login, and gone when the
browser forgets it.
"""

from __future__ import annotations

import ipaddress
import functools
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from uvicorn.middleware.proxy_headers import _TrustedHosts  # uvicorn's own rule, so the two never disagree

from config.settings import settings, uvicorn_forwarded_allow_ips

VISITOR_COOKIE = "mnist_visitor"
VISITOR_DAYS = 365
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies(text: str | None = None) -> tuple[Network, ...]:
    """The proxies' networks, from `TRUSTED_PROXIES` (comma-separated addresses or CIDRs; empty: none)."""
    return _networks(settings().trusted_proxies if text is None else text)


@functools.cache
def _networks(raw: str) -> tuple[Network, ...]:  # parsed once per value, not on every request
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip())


def _in(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def peer_before_uvicorn(peer: str | None, forwarded_for: str | None, allowed: str | None = None) -> str | None:
    """The connection's own address, where uvicorn may have replaced it. uvicorn puts an X-Forwarded-For hop in the
    peer's place when the connection came from FORWARDED_ALLOW_IPS (loopback when unset: `streamlit run` without
    the image's or `make run`'s empty value). Where the peer is the very hop uvicorn would pick from the header, the
    connection came from one of those addresses: it is put back, so only TRUSTED_PROXIES decides what is believed
    and a client on loopback cannot name itself."""
    raw = uvicorn_forwarded_allow_ips() if allowed is None else allowed
    if not forwarded_for or peer is None or not raw.strip():
        return peer
    believed = _TrustedHosts(raw)
    if believed.get_trusted_client_address(forwarded_for)[0] != peer:
        return peer
    for part in raw.split(","):
        try:
            return str(ipaddress.ip_network(part.strip(), strict=False).network_address)
        except ValueError:
            continue
    return "proxy"  # "*": some peer uvicorn believed, which no address names


def client_address(peer: str | None, forwarded_for: str | None, proxies: str | None = None) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address in
    X-Forwarded-For that is not one of the proxies. Loopback without a proxy is "local"."""
    networks = trusted_proxies(proxies)
    address = peer_before_uvicorn(peer, forwarded_for) or "local"
    if forwarded_for and address != "local" and _in(address, networks):
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            address = hop
            if not _in(hop, networks):
                break
    return address


def client_of_scope(scope: Mapping[str, Any]) -> str:
    """`client_address` of an ASGI request or websocket: its peer and its first X-Forwarded-For header."""
    peer = scope.get("client")
    forwarded = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"), None)
    return client_address(peer[0] if peer else None, forwarded)


def new_visitor_id() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits: nobody guesses another browser's id


def valid_visitor_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_TOKEN.match(value))


def visitor_cookie(value: str, secure: bool) -> str:
    """The Set-Cookie header's value: readable by the server only (HttpOnly), sent on this site's own requests."""
    flags = f"Path=/; Max-Age={VISITOR_DAYS * 86400}; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return f"{VISITOR_COOKIE}={value}; {flags}"


def cookie_value(header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
