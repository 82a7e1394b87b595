"""The loop's scheduled check (training/lifecycle/loop.py, `make loop`): its rules, the facts it reads from a real
prediction log, and a check with nothing to do, which says why and records itself."""

from __future__ import annotations

import dataclasses
import hashlib
import datetime as dt
import json
from pathlib import Path

import psycopg2
import pytest

import db
import utils
from storage.loop_facts import LoopFacts, read
from storage.trust import Trust
from tools import loop_drill
from training.lifecycle import loop
from training.options import build_parser, to_recipe

RULES = loop.Rules(min_new_labels=200, max_error_rate=0.10, max_not_digit_shift=0.10, window_days=7)
PNG = utils.to_png(__import__("numpy").zeros((28, 28)))


def facts(new: int, labels: int = 100, wrong: int = 5, window: int = 1000, flagged: int = 30, base: int = 4000,
          base_flagged: int = 120) -> LoopFacts:  # fmt: skip
    return LoopFacts(new, 0, 0, new, labels, wrong, window, flagged, base, base_flagged)


def test_retrain_needs_enough_labels_and_a_reason() -> None:
    assert loop.decide(facts(new=40, wrong=50), RULES)[0] is False, "too few labels, however wrong"
    needed, reasons = loop.decide(facts(new=300, wrong=5), RULES)
    assert needed is False and "5.0% (5/100) ≤ 10%" in reasons[1] and "within" in reasons[2]
    needed, reasons = loop.decide(facts(new=300, wrong=20), RULES)
    assert needed and "20.0% (20/100) > 10%" in reasons[1], "the error rate"
    needed, reasons = loop.decide(facts(new=300, wrong=5, flagged=200), RULES)
    assert needed and "+17.0%, beyond ±10%" in reasons[2], "drift in the not-a-digit share"
    assert "300 trusted new labels since the production model was made ≥ MIN_NEW_LABELS 200" == reasons[0]
    flood = dataclasses.replace(facts(new=300, wrong=300, labels=300), new_held=50, new_over_cap=250, new_trusted=0)
    needed, reasons = loop.decide(flood, RULES)
    assert needed is False, "one client's 300 labels: held or over the cap, none trusted"
    assert reasons[0].startswith("0 trusted new labels") and "50 held for the operator's review" in reasons[0]
    assert "250 beyond one labeller's MAX_LABELS_PER_CLIENT" in reasons[0]
    assert loop.decide(facts(new=300, wrong=5, window=20, flagged=20), RULES)[0] is False, "too few to compare"


def test_the_facts_come_from_the_log(database: db.Database, database_url: str) -> None:
    for n in range(60):
        row = database.log_prediction(n % 10, 0.9, [0.1] * 10, PNG, "v", 1.0, n % 6 != 0, 0.1)
        if n < 40:
            database.set_true_label(row, n % 10 if n % 4 else (n + 1) % 10)  # every fourth label says "wrong"
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:  # 20 old predictions, before the window
        cur.execute("UPDATE predictions SET created_at = now() - interval '10 days' WHERE id > 40")
    conn.close()
    now = dt.datetime.now(dt.timezone.utc)
    found = read(database, now - dt.timedelta(days=1), 7, Trust(), now=now + dt.timedelta(seconds=1))
    # Wrong: a label that is not the digit shown, or a digit where the app said "not a digit" (every sixth row).
    wrong = sum(1 for n in range(40) if n % 4 == 0 or n % 6 == 0)
    assert (found.new_labels, found.window_labels, found.window_wrong) == (40, 40, wrong) == (40, 40, 13)
    assert found.new_trusted == 40 and found.new_held == found.new_over_cap == 0
    assert (found.window_predictions, found.baseline_predictions) == (40, 20)
    assert found.window_flagged == sum(1 for n in range(40) if n % 6 == 0)
    assert read(database, now + dt.timedelta(hours=1), 7, Trust()).new_labels == 0, "labels before the model was made"


def test_a_check_with_40_labels_is_not_needed_and_says_why(
    database: db.Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(40):
        database.set_true_label(database.log_prediction(7, 0.9, [0.1] * 10, PNG, "v", 1.0, True, 0.1), 1)
    flags = ["--retrain-if-needed", "--no-track", "--snapshot-dir", str(tmp_path / "feedback")]
    recipe = to_recipe(build_parser().parse_args(flags), flags)
    assert loop.check(recipe, database) == 0
    (entry,) = [json.loads(line) for line in (tmp_path / "loop" / "checks.jsonl").read_text().splitlines()]
    assert entry["decision"] == "not needed" and entry["facts"]["new_labels"] == 40
    assert entry["reasons"][0].startswith("40 trusted new labels") and "< MIN_NEW_LABELS 200" in entry["reasons"][0]
    assert "loop check: not needed" in capsys.readouterr().out
    from serve.metrics import loop_state
    from storage.loop_facts import last_check

    assert (last_check(database) or {}).get("decision") == "not needed", "in loop_checks, where /metrics reads it"
    state = {family.name: family.samples[0].value for family in loop_state(database)}
    assert state["mnist_loop_last_check_timestamp_seconds"] > 0
    assert state["mnist_loop_candidate_waiting"] == 0 and state["mnist_loop_check_failed"] == 0


def test_no_labeller_floods_a_retraining_set_and_confident_contradictions_are_held(database: db.Database) -> None:
    """300 sevens the model was sure of, labelled "1" by one visitor: held for review, none trained on. 120 labels
    from another single visitor: only their newest 50. 30 visitors x 10 labels: all kept."""

    def labelled(digit: int, confidence: float, label: int, by: str) -> int:
        row = database.log_prediction(digit, confidence, [0.1] * 10, PNG, "v", 1.0, True, 0.01)
        database.set_true_label(row, label, by)
        return row

    poisoned = {labelled(7, 0.999, 1, "poisoner") for _ in range(300)}
    eager = [labelled(4, 0.6, 9, "eager") for _ in range(120)]
    crowd = {labelled(3, 0.7, 5, f"visitor-{n % 30}") for n in range(300)}
    rows = list(database.iter_labelled(trust=Trust(50, 0.99, 5)))
    held = {row["id"] for row in rows if row["held"]}
    kept = {row["id"] for row in rows if not row["held"]}
    assert held == poisoned, "every confident contradiction held, nothing else"
    assert kept & set(eager) == set(eager[-50:]), "one labeller's newest 50, no more"
    assert crowd <= kept, "30 labellers x 10: all kept"
    assert {row["labeller"] for row in rows if row["id"] in crowd} == {f"visitor-{n}" for n in range(30)}


@pytest.mark.slow
def test_the_loop_drill_in_small(mnist_test_split: object, admin_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """make loop-drill with a dry-run retrain (tools/loop_drill.py), a real app watching the model file: 40 labels are
    not enough; one visitor's 300 poisoned labels start nothing and say why; 30 visitors' crossed twos start a
    retrain whose (dry-run) candidate the gate refuses, and production stays."""
    assert loop_drill.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    first, poisoned, style = out.split("\n1. ")[1], out.split("\n3. ")[1], out.split("\n2. ")[1]
    assert "not needed" in first and "40 trusted new labels" in first
    assert "not needed" in poisoned.split("\n2. ")[0] and "held for the operator's review" in poisoned
    assert "production unchanged: True" in poisoned.split("\n2. ")[0]
    assert "candidate refused by the gate" in style and "production unchanged: True" in style


def test_when_production_was_made_is_read_without_torch_when_it_can_be(tmp_path: Path) -> None:
    """From the promotion's record when it describes the file (a fake model file here: torch could not read it),
    then remembered by the file's identity; a new file is read again; an unreadable one counts every label."""
    model, remembered = tmp_path / "model.pth", tmp_path / "loop" / "production.json"
    model.write_bytes(b"not a checkpoint")
    record = {
        "sha256": hashlib.sha256(b"not a checkpoint").hexdigest(),
        "trained_at": "2026-12-04T03:20:35+00:00",
    }
    (tmp_path / "production.json").write_text(json.dumps(record))
    made = dt.datetime(2026, 12, 4, 3, 20, 35, tzinfo=dt.timezone.utc)
    assert loop.production_made_at(model, remembered) == made
    (tmp_path / "production.json").unlink()
    assert loop.production_made_at(model, remembered) == made, "remembered by the file's identity"
    model.write_bytes(b"another file")
    assert loop.production_made_at(model, remembered) == loop.EPOCH, "a new file the record does not describe"
