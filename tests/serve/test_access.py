"""Who sees what, below the page: the limits and the password throttle, the client's address behind a proxy, the
operator password's rules, visitors' rows in storage, retention, and rows keeping the time their answer was shown."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

import db
from access import clients, operator
from access.limits import RateLimit, Slots, Throttle, retry_after
from tests.architecture import ROOT
from tools import pg

ALICE, BOB = "alice-" + "a" * 24, "bob-" + "b" * 24


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_limit_allows_its_count_per_window_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limit = RateLimit(3, 60, clock)
    assert [limit.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.check("a") == pytest.approx(60.0) and limit.check("b") == 0.0, "per client"
    clock.now += 30
    assert limit.check("a") == pytest.approx(30.0), "a refused try is not counted"
    clock.now += 30.5
    assert limit.check("a") == 0.0, "the window slid: allowed again"
    assert RateLimit(0, 60, clock).check("a") == 0.0, "0 turns the limit off"


def test_wrong_passwords_are_throttled_for_a_while_never_for_good() -> None:
    clock = Clock()
    throttle = Throttle(5, 300, clock)
    for _ in range(5):
        assert throttle.wait("x") == 0.0
        throttle.failed("x")
    assert throttle.wait("x") == pytest.approx(300.0) and throttle.wait("y") == 0.0
    assert retry_after(throttle.wait("x")) == "300"
    clock.now += 301
    assert throttle.wait("x") == 0.0, "the operator is never locked out for good"
    throttle.failed("x")
    throttle.succeeded("x")
    assert throttle.wait("x") == 0.0


def test_a_guesser_on_the_operator_s_address_does_not_lock_out_the_operator_s_browser() -> None:
    clock = Clock()
    throttle = Throttle(5, 300, clock)
    throttle.succeeded("203.0.113.5", ALICE)  # the operator signed in from this browser before
    for guess in range(5):  # someone else behind the same address, with no cookie or a made-up one
        throttle.failed("203.0.113.5", None if guess % 2 else BOB)
    assert throttle.wait("203.0.113.5") > 0 and throttle.wait("203.0.113.5", BOB) > 0, "the guesser waits"
    assert throttle.wait("203.0.113.5", ALICE) == 0.0, "the operator's browser may still sign in"
    assert throttle.wait("198.51.100.9") == 0.0, "and so may anyone from another address"
    for _ in range(5):
        throttle.failed("203.0.113.5", ALICE)
    assert throttle.wait("203.0.113.5", ALICE) > 0, "a known browser that keeps guessing is slowed too"


def test_slots_refuse_beyond_their_size_and_come_back() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.give_back()
    assert slots.take() and slots.used == 2


def test_the_proxy_header_is_believed_only_from_the_proxy() -> None:
    assert clients.client_address("203.0.113.7", "198.51.100.1", "10.0.0.0/8") == "203.0.113.7", "spoofed header"
    assert clients.client_address("10.0.0.2", "198.51.100.1", "10.0.0.0/8") == "198.51.100.1"
    # A client's own forged entry comes first; the proxy appends the address it saw: that one counts.
    assert clients.client_address("10.0.0.2", "6.6.6.6, 198.51.100.1", "10.0.0.0/8") == "198.51.100.1"
    assert clients.client_address("10.0.0.2", "198.51.100.1, 10.0.0.3", "10.0.0.0/8") == "198.51.100.1"
    assert clients.client_address(None, "198.51.100.1", "") == "local"
    assert clients.client_address("10.0.0.2", "not-an-address", "10.0.0.0/8") == "not-an-address"


def test_a_peer_uvicorn_rewrote_from_the_header_is_put_back() -> None:
    """uvicorn trusts loopback's X-Forwarded-For unless FORWARDED_ALLOW_IPS says otherwise, and hands the app the
    header's hop as the peer: that hop is taken back to the loopback it came from."""
    loopback = "127.0.0.1,::1"
    assert clients.peer_before_uvicorn("198.51.100.1", "198.51.100.1", loopback) == "127.0.0.1"
    assert clients.peer_before_uvicorn("198.51.100.1", "6.6.6.6, 198.51.100.1, 127.0.0.1", loopback) == "127.0.0.1"
    assert clients.peer_before_uvicorn("203.0.113.7", "198.51.100.1", loopback) == "203.0.113.7", "a real peer"
    assert clients.peer_before_uvicorn("198.51.100.1", "198.51.100.1", "") == "198.51.100.1", "uvicorn trusts none"
    assert clients.peer_before_uvicorn("198.51.100.1", None, loopback) == "198.51.100.1"
    assert clients.peer_before_uvicorn("198.51.100.1", "198.51.100.1", "10.0.0.0/8") == "10.0.0.0"
    assert clients.peer_before_uvicorn("198.51.100.1", "198.51.100.1", "*") == "proxy"


def test_visitor_ids_are_random_and_checked() -> None:
    ids = {clients.new_visitor_id() for _ in range(100)}
    assert len(ids) == 100 and all(clients.valid_visitor_id(i) for i in ids)
    for bad in ("", "short", "x" * 65, "a;b=c" * 6, None, 7):
        assert not clients.valid_visitor_id(bad)
    cookie = clients.visitor_cookie("v" * 32, secure=True)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert clients.cookie_value(f"a=1; {clients.VISITOR_COOKIE}=abc; b=2", clients.VISITOR_COOKIE) == "abc"


def test_the_operator_password_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_PASSWORD", "short")
    with pytest.raises(operator.OperatorConfigError, match="at least 12"):
        operator.password()
    monkeypatch.setenv("OPERATOR_PASSWORD", "twelve chars")
    assert operator.password() == "twelve chars"
    assert operator.is_password("twelve chars", "twelve chars") and not operator.is_password("twelve", "twelve chars")
    assert operator.basic_credentials("Basic b3BlcmF0b3I6YSBiOmM=") == ("operator", "a b:c")
    for bad in (None, "", "Bearer x", "Basic", "Basic !!!", "Basic bm9jb2xvbg=="):
        assert operator.basic_credentials(bad) is None


def test_a_short_operator_password_stops_the_server_with_the_reason() -> None:
    env = {"OPERATOR_PASSWORD": "too short", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "OPERATOR_PASSWORD is 9 characters long; use at least 12" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_links_are_spent_once_and_expire() -> None:
    links = operator.ExportLinks(lifetime=0.2)
    token = links.issue()
    assert links.spend(token) and not links.spend(token) and not links.spend(None) and not links.spend("guess")
    late = links.issue()
    time.sleep(0.3)
    assert not links.spend(late)


def test_history_shows_a_visitor_their_own_rows_and_the_operator_all(database: db.Database) -> None:
    for visitor in (ALICE, BOB, ALICE, None):
        database.log_prediction(4, 0.9, visitor=visitor)
    assert [r["id"] for r in database.get_prediction_history(visitor=ALICE)] == [3, 1]
    assert [r["id"] for r in database.get_prediction_history(visitor=BOB)] == [2]
    assert database.count_predictions(ALICE) == 2 and database.count_predictions(BOB) == 1
    assert database.count_predictions() == 4 and len(database.get_prediction_history()) == 4
    assert database.get_prediction_history(visitor="nobody-" + "n" * 24) == []
    with pytest.raises(ValueError):
        database.log_prediction(4, 0.9, visitor="x" * 10_000)


def age_rows(dsn: str, days: int, ids: list[int]) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("UPDATE predictions SET created_at = now() - %s * interval '1 day' WHERE id = ANY(%s)", (days, ids))
    conn.close()


def test_prune_deletes_old_rows_with_their_images_and_keeps_stats_exact(
    database: db.Database, database_url: str
) -> None:
    ids = [database.log_prediction(d % 10, 0.9, image_png=b"png") for d in range(30)]
    for i in ids[:5]:
        database.set_true_label(i, 3)
    age_rows(database_url, 400, ids[:12])
    assert database.prune(365, batch=5) == 12, "in batches: 5 + 5 + 2"
    assert database.prune(365) == 0
    stats = database.get_stats()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(true_label), min(id) FROM predictions")
        total, labelled, first = cur.fetchone()  # type: ignore[misc]
    conn.close()
    assert (total, labelled, first) == (18, 0, ids[12])
    assert stats["total"] == 18 and stats["labelled"] == 0, "the rollup follows the deletes exactly"
    with pytest.raises(ValueError):
        database.prune(0)


def test_make_prune_says_how_many_rows_went(database: db.Database, database_url: str) -> None:
    ids = [database.log_prediction(1, 0.9) for _ in range(4)]
    age_rows(database_url, 40, ids[:3])
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "SPOOL_PATH": "/tmp/prune-spool.jsonl"}
    result = subprocess.run(
        [sys.executable, "db.py", "--prune-days", "30"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pruned 3 predictions older than 30 days" in result.stdout
    assert database.count_predictions() == 1


def test_rows_keep_the_time_their_answer_was_shown_through_a_hang(tmp_path: Path) -> None:
    """SIGSTOP the server (a frozen VM) while two answers are shown: the writes time out (the user is answered, the
    writes spooled) and land after the thaw; the rows carry the moments the answers were shown, in that order, not
    the moment the database woke up."""
    server = pg.PrivateServer(tmp_path / "pgdata")
    handle = db.Database(server.dsn, spool_path=tmp_path / "spool.jsonl", write_timeout=0.5, replay_interval=0.3)
    handle.init_db()
    handle.log_prediction(0, 0.9, visitor=ALICE)  # pooled connections open: the next writes reach a frozen backend
    frozen = server.freeze()
    shown = []
    try:
        for digit in (1, 2):
            shown.append(dt.datetime.now(dt.timezone.utc))
            handle.log_prediction(digit, 0.9, visitor=ALICE)
            time.sleep(0.6)
        time.sleep(1.5)
    finally:
        woke = dt.datetime.now(dt.timezone.utc)
        server.thaw(frozen)
    deadline = time.monotonic() + 30
    while handle.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = handle.get_prediction_history(visitor=ALICE)  # newest first, by created_at
    handle.close()
    server.stop()
    assert [r["predicted_digit"] for r in rows] == [2, 1, 0], "stored once each, in the order they were shown"
    for row, at in zip(reversed(rows[:2]), shown):
        assert abs((row["created_at"] - at).total_seconds()) < 0.3, "the time the answer was shown"
        assert (woke - row["created_at"]).total_seconds() > 1.0, "not the time the database woke up"
