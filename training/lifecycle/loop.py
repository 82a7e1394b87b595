"""The loop's scheduled check: retrain only when the labels call for it, and say why every time.

    make loop          # = python train.py --retrain-if-needed (a systemd timer runs it nightly: DEPLOYMENT.md)

The rules (config/settings.py, group "loop"): retrain when at least MIN_NEW_LABELS labels have arrived since the
production model was made, **and** either the feedback error rate over the last LOOP_WINDOW_DAYS is above
LOOP_MAX_ERROR_RATE, or the share of "not a digit" answers in that window has moved more than
LOOP_MAX_NOT_DIGIT_SHIFT from the weeks before (drift in what people draw). Then the existing fine-tune makes a
candidate (`make retrain`), and with AUTO_PROMOTE=1 the gate decides whether it ships (`make promote`); otherwise it
waits for the operator. Each check is a tracked MLflow run (its facts, its decision and its reasons) and a line in
`data/loop/checks.jsonl`; a check with nothing to do reads two queries and ends. Only labels a retraining set
would trust count towards MIN_NEW_LABELS (storage/trust.py): one client's flood, or labels contradicting confident
answers that too few labellers agree on, do not start a retrain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from config.paths import file_identity
from config.settings import settings
from storage.database import Database
from storage.loop_facts import WAITING, LoopFacts, read, record_check
from storage.pool import DatabaseUnavailable
from storage.trust import Trust
from training.lifecycle.registry import Run
from training.recipe import CANDIDATE_PATH, Recipe

EPOCH = dt.datetime.fromtimestamp(0, dt.timezone.utc)


@dataclass(frozen=True)
class Rules:
    min_new_labels: int
    max_error_rate: float
    max_not_digit_shift: float
    window_days: float

    @classmethod
    def from_settings(cls) -> Rules:
        current = settings()
        return cls(
            current.min_new_labels,
            current.loop_max_error_rate,
            current.loop_max_not_digit_shift,
            current.loop_window_days,
        )


def decide(facts: LoopFacts, rules: Rules) -> tuple[bool, list[str]]:
    """(retrain?, the reasons, each with its figures)."""
    reasons = []
    enough = facts.new_trusted >= rules.min_new_labels
    reasons.append(
        f"{facts.new_trusted} trusted new labels since the production model was made "
        + ("≥" if enough else "<")
        + f" MIN_NEW_LABELS {rules.min_new_labels}"
        + untrusted(facts)
    )
    error, shift = facts.error_rate, facts.not_digit_shift
    wrong = error is not None and error > rules.max_error_rate
    reasons.append(
        f"feedback error rate over {rules.window_days:g} days: "
        + (
            f"{error:.1%} ({facts.window_wrong}/{facts.window_labels}) "
            + f"{'>' if wrong else '≤'} {rules.max_error_rate:.0%}"
            if error is not None
            else "no labels in the window"
        )
    )
    drift = shift is not None and abs(shift) > rules.max_not_digit_shift
    reasons.append(
        "not-a-digit share against the weeks before: "
        + (
            f"{shift:+.1%}, {'beyond' if drift else 'within'} ±{rules.max_not_digit_shift:.0%}"
            if shift is not None
            else "too few predictions (50 a side) to compare"
        )
    )
    return enough and (wrong or drift), reasons


def untrusted(facts: LoopFacts) -> str:
    """Why some new labels do not count (storage/trust.py), or nothing when all do."""
    if facts.new_trusted == facts.new_labels:
        return ""
    return (
        f" (of {facts.new_labels} new: {facts.new_held} held for the operator's review, contradicting confident "
        f"answers with too few labellers agreeing; {facts.new_over_cap} beyond one labeller's MAX_LABELS_PER_CLIENT)"
    )


def production_made_at(model: Path, remembered: Path) -> dt.datetime:
    """When the production model was trained; the epoch when unknown, so every label counts. Read, cheapest first,
    from `remembered` (kept with the file's identity: inode, mtime, size), from the promotion's record beside the
    model (production.json, when its sha256 is the file's), or from the checkpoint itself: a check with nothing to do
    need not import torch, and a promoted file is a new identity."""
    found = file_identity(model)
    if found is None:
        return EPOCH
    identity = list(found)  # as JSON keeps it
    try:
        known = json.loads(remembered.read_text())
        if known["file"] == identity:
            return dt.datetime.fromisoformat(known["trained_at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    made = recorded_made_at(model) or checkpoint_made_at(model)
    if made is None:
        return EPOCH
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(json.dumps({"file": identity, "trained_at": made.isoformat(), "model": str(model)}))
    return made


def recorded_made_at(model: Path) -> dt.datetime | None:
    """trained_at from the promotion's record (training.lifecycle.promotion writes it), if it describes this file."""
    try:
        record = json.loads(model.with_name("production.json").read_text())
        if record.get("trained_at") and record.get("sha256") == hashlib.sha256(model.read_bytes()).hexdigest():
            return dt.datetime.fromisoformat(record["trained_at"])
    except (OSError, ValueError, AttributeError):
        pass
    return None


def checkpoint_made_at(model: Path) -> dt.datetime | None:
    from inference.network import ModelLoadError, load_checkpoint  # torch: only when nothing else says

    try:
        return dt.datetime.fromisoformat(str(load_checkpoint(model).meta["trained_at"]))
    except (ModelLoadError, KeyError, ValueError):
        return None


def checks_log(recipe: Recipe) -> Path:
    """data/loop/checks.jsonl, beside the feedback snapshots (a drill's throwaway folder keeps its own)."""
    return recipe.snapshot_dir.parent / "loop" / "checks.jsonl"


def record(entry: dict[str, Any], recipe: Recipe, database: Database) -> None:
    """The check as a line of data/loop/checks.jsonl, a row of loop_checks (the operator's metrics and alerts read
    it), and a tracked MLflow run."""
    checks = checks_log(recipe)
    checks.parent.mkdir(parents=True, exist_ok=True)
    with open(checks, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
    try:
        record_check(database, entry)
    except DatabaseUnavailable as exc:
        print(f"  (not recorded in the database: {exc})")
    run = Run("loop-check", tags={"decision": entry["decision"], "kind": "loop-check"}, enabled=recipe.track)
    run.log_params({f"rule_{k}": v for k, v in entry["rules"].items()})
    run.log_metrics({k: v for k, v in entry["facts"].items() if isinstance(v, (int, float))})
    run.set_tags({"reasons": " | ".join(entry["reasons"])[:4900]})
    run.finish()


def check(recipe: Recipe, database: Database | None = None) -> int:
    """One scheduled check: 0 nothing to do, or a candidate shipped or left for the operator; 1 a candidate the
    gate refused; 2 the database could not be read or the retrain was refused."""
    handle = database or Database()
    try:
        entry, code = decide_and_act(recipe, handle)
        print(f"loop check: {entry['decision']}")
        for reason in entry["reasons"]:
            print(f"  - {reason}")
        record(entry, recipe, handle)
        return code
    finally:
        if database is None:
            handle.close()


def decide_and_act(recipe: Recipe, database: Database) -> tuple[dict[str, Any], int]:
    """The check's record (its rules, facts, decision and reasons) and its exit code."""
    rules = Rules.from_settings()
    entry: dict[str, Any] = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rules": asdict(rules),
    }
    try:
        made_at = production_made_at(recipe.base, checks_log(recipe).with_name("production.json"))
        facts = read(database, made_at, rules.window_days, Trust.from_settings())
    except DatabaseUnavailable as exc:
        entry.update(decision="failed", facts={}, reasons=[f"the database could not be read: {exc}"])
        return entry, 2
    needed, reasons = decide(facts, rules)
    entry.update(facts={**asdict(facts), "error_rate": facts.error_rate, "not_digit_shift": facts.not_digit_shift})
    entry.update(reasons=reasons, decision="retrain" if needed else "not needed")
    if not needed:
        return entry, 0
    from training.retrain import retrain  # the training stack, only when a retrain is called for

    if retrain(recipe) != 0:
        entry.update(decision="retrain refused")
        return entry, 2
    return promote_or_wait(entry, recipe)


def promote_or_wait(entry: dict[str, Any], recipe: Recipe) -> tuple[dict[str, Any], int]:
    version = json.loads((recipe.out or CANDIDATE_PATH).with_suffix(".json").read_text()).get("version")
    entry["candidate_version"] = version
    if not settings().auto_promote or version is None:
        entry.update(decision=WAITING)
        entry["reasons"].append(f"AUTO_PROMOTE is off: make promote VERSION={version} ships it")
        return entry, 0
    from training.lifecycle import promotion

    shipped = promotion.promote(str(version), recipe.data_dir)
    entry.update(decision="promoted" if shipped == 0 else "candidate refused by the gate")
    return entry, 0 if shipped == 0 else 1
