"""Who is looking at the page: the browser's anonymous visitor id, the client's address, and whether the operator
has signed in (and the sign-in itself, on History).

    make run      # then open /history: "Your predictions: N", and the operator's sign-in below

The visitor id comes from the HttpOnly cookie server.py sets on the page load; a session that has none (a browser
that refuses cookies, the headless page tests) gets one of its own for as long as it lasts.
"""

from __future__ import annotations

import streamlit as st

from access import clients, operator
from access.limits import retry_after


def visitor_id() -> str:
    cookie = st.context.cookies.get(clients.VISITOR_COOKIE)
    if clients.valid_visitor_id(cookie):
        return str(cookie)
    return str(st.session_state.setdefault("visitor_id", clients.new_visitor_id()))


def client() -> str:
    """The address limits and the password throttle count by (the proxy's header believed only from the proxy)."""
    peer, forwarded = st.context.ip_address, st.context.headers.get("X-Forwarded-For")
    # Both are None on loopback, and not text at all where there is no connection (headless page tests).
    return clients.client_address(
        peer if isinstance(peer, str) else None, forwarded if isinstance(forwarded, str) else None
    )


def is_operator() -> bool:
    return bool(st.session_state.get("operator")) and operator_password() is not None


def operator_password() -> str | None:
    try:
        return operator.password()
    except operator.OperatorConfigError:
        return None  # server.py refuses to start on it; a page run some other way has no operator view


def try_sign_in(given: str) -> str | None:
    """Check `given` against the operator password; None when signed in, else what to tell the user."""
    expected, who, device = operator_password(), client(), visitor_id()
    if expected is None:
        return "There is no operator view: OPERATOR_PASSWORD is not set."
    wait = operator.throttle().wait(who, device)
    if wait > 0:
        return f"Too many wrong passwords from here: try again in {retry_after(wait)} s."
    if not operator.is_password(given, expected):
        operator.throttle().failed(who, device)
        return "Wrong password."
    operator.throttle().succeeded(who, device)
    st.session_state["operator"] = True
    return None


def operator_bar() -> bool:
    """The operator's sign-in (a password field and "Sign in") or, signed in, "Sign out"; True when signed in."""
    if operator_password() is None:
        return False
    if is_operator():
        if st.button("Sign out", key="operator-sign-out"):
            st.session_state.pop("operator", None)
            st.rerun()
        return True
    with st.form("operator-sign-in", clear_on_submit=True):
        st.caption("Operator: sign in to see every prediction, filter them and export them.")
        given = st.text_input("Operator password", type="password", key="operator-password")
        if st.form_submit_button("Sign in"):
            problem = try_sign_in(given or "")
            if problem is None:
                st.rerun()
            st.error(problem)
    return False
