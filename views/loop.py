"""The loop on the Stats page: how the model does on feedback week by week, the not-a-digit share and its drift,
the loop's last check, the model versions and what each promotion changed; for the signed-in operator, the labels
held for review, each with Accept and Reject.

    make run      # then open /stats (the review list after signing in on History)

Feedback figures and drift for everyone (aggregates, as the rest of Stats, read at most every five minutes); the held
labels' drawings only for the operator, since they are other visitors' drawings, read afresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from config.settings import settings
from inference.labels import NOT_DIGIT
from inference.network import Checkpoint
from storage import loop_facts, review
from storage.database import Database
from storage.pool import DatabaseUnavailable
from storage.trust import Trust
from views import session

FIGURES_SECONDS = 300  # the loop changes nightly; Stats may show figures five minutes old


def loop_section(checkpoint: Checkpoint, database: Database) -> None:
    st.markdown("### The loop")
    try:
        facts, weeks, versions, last, promotions = loop_figures(
            database, database.dsn, made_at(checkpoint), settings().loop_window_days, Trust.from_settings()
        )
    except DatabaseUnavailable:
        st.warning("The loop's figures are unavailable while the database is unreachable.")
        return
    loop_metrics(facts)
    last_check_caption(last)
    if weeks:
        weekly_chart(weeks)
    if versions:
        versions_table(versions, promotions)
    if session.is_operator():
        review_list(database)


@st.cache_data(ttl=FIGURES_SECONDS, show_spinner=False)
def loop_figures(
    _database: Database, dsn: str, since: dt.datetime, window_days: float, trust: Trust
) -> tuple[loop_facts.LoopFacts, list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None, list[Any]]:
    """The loop's figures, read at most once per FIGURES_SECONDS for every visitor: on a year of traffic (a million
    rows) they cost about a second of the database's time (make bench-history), the rest of Stats milliseconds."""
    return (
        loop_facts.read(_database, since, window_days, trust),
        loop_facts.weekly(_database),
        loop_facts.versions(_database),
        loop_facts.last_check(_database),
        loop_facts.promotions(_database),
    )


def made_at(checkpoint: Checkpoint) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(checkpoint.meta["trained_at"]))
    except (KeyError, ValueError):
        return dt.datetime.fromtimestamp(0, dt.timezone.utc)


def share(part: int, whole: int) -> str:
    return "–" if not whole else f"{part / whole:.1%}"


def loop_metrics(facts: loop_facts.LoopFacts) -> None:
    days = f"{settings().loop_window_days:g} days"
    accuracy_col, flagged_col, drift_col, labels_col = st.columns(4)
    accuracy_col.metric(
        "Recent accuracy",
        share(facts.window_labels - facts.window_wrong, facts.window_labels),
        help=f"Of the {facts.window_labels:,} answers labelled in the last {days} (LOOP_WINDOW_DAYS), those users "
        "marked right.",
    )
    flagged_col.metric(
        "Recent not a digit",
        share(facts.window_flagged, facts.window_predictions),
        help=f'The share of the last {days}\' answers that were "not a digit".',
    )
    shift = facts.not_digit_shift
    drift_col.metric(
        "Drift",
        "–" if shift is None else f"{shift * 100:+.1f} pts",
        help="The not-a-digit share of the last window against the four before it (50 predictions a side at least); "
        f"beyond ±{settings().loop_max_not_digit_shift:.0%} the loop retrains.",
    )
    labels_col.metric(
        "New labels",
        f"{facts.new_trusted:,}",
        help=f"Labels since this model was made that a retraining set would trust, of {facts.new_labels:,} given "
        f"({facts.new_held:,} held for review, "
        f"{facts.new_over_cap:,} beyond one labeller's cap); the loop retrains from {settings().min_new_labels:,}.",
    )


def last_check_caption(last: dict[str, Any] | None) -> None:
    if last is None:
        st.caption("The loop has not checked yet (`make loop`, DEPLOYMENT.md schedules it).")
        return
    when = dt.datetime.fromtimestamp(last["checked_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = f" (candidate v{last['candidate_version']})" if last.get("candidate_version") else ""
    st.caption(f"**Last check**, {when}: {last['decision']}{version}.")
    with st.expander("Why"):
        st.markdown("\n".join(f"- {reason}" for reason in last.get("reasons") or []))


def weekly_chart(weeks: list[dict[str, Any]]) -> None:
    rows = [
        {"week": row["week"], "figure": name, "share": value}
        for row in weeks
        for name, value in (
            ("feedback accuracy", row["answered_right"] / row["labelled"] if row["labelled"] else None),
            ("not a digit", row["flagged"] / row["predictions"] if row["predictions"] else None),
        )
        if value is not None
    ]
    frame = pd.DataFrame(rows)
    frame["week"] = [f"{week:%Y-%m-%d}" for week in frame["week"]]  # each week's Monday (UTC), as the query made it
    st.markdown("**Week by week** (feedback accuracy and the not-a-digit share)")
    st.altair_chart(
        alt.Chart(frame, height=200)
        .mark_line(point=True)
        .encode(
            x=alt.X("week:O", title="week of", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title=None),
            color=alt.Color("figure:N", title=None),
            tooltip=["week", "figure", alt.Tooltip("share:Q", format=".1%")],
        ),
        width="stretch",
    )


def versions_table(versions: list[dict[str, Any]], promotions: list[dict[str, Any]]) -> None:
    """One row per model version that answered, oldest first: a promotion's effect is the row after it."""
    table = pd.DataFrame(
        {
            "Model": [row["model_version"] or "unknown" for row in versions],
            "Answered from": [f"{row['first_seen']:%Y-%m-%d %H:%M}" for row in versions],
            "to": [f"{row['last_seen']:%Y-%m-%d %H:%M}" for row in versions],
            "Predictions": [row["predictions"] for row in versions],
            "Feedback accuracy": [share(row["answered_right"], row["labelled"]) for row in versions],
            "Not a digit": [share(row["flagged"], row["predictions"]) for row in versions],
        }
    )
    st.markdown("**Model versions** (each one's answers; the row after a promotion is what it changed)")
    st.dataframe(table, hide_index=True, width="stretch")
    if promotions:
        st.caption(
            "Loop candidates: "
            + "; ".join(
                f"v{row['candidate_version']} {row['decision']} {row['checked_at']:%Y-%m-%d}" for row in promotions
            )
        )


def review_list(database: Database) -> None:
    """The held labels, newest first, with the operator's Accept (train on it) and Reject (never)."""
    st.markdown("**Labels held for review**")
    if problem := st.session_state.pop("review_problem", None):
        st.warning(problem)
    try:
        held = review.held_labels(database, Trust.from_settings())
    except DatabaseUnavailable:
        st.warning("The held labels are unavailable while the database is unreachable.")
        return
    if not held:
        st.caption("None: no label contradicts a confident answer without enough labellers agreeing.")
        return
    st.caption(
        "Each contradicts an answer the model gave with high confidence, and too few labellers made the same "
        "correction. Accepted labels are trained on; rejected ones never are."
    )
    for row in held:
        image_col, text_col, buttons_col = st.columns([1, 6, 2.2], vertical_alignment="center")
        image_col.image(row["image"], width=56)
        said = "Not a digit" if row["answer"] in (-1, NOT_DIGIT) else str(row["answer"])
        who = hashlib.sha256(str(row["labeller"]).encode()).hexdigest()[:8]
        where = f" (digit {row['part']} of a number: the whole row is reviewed)" if row["part"] else ""
        text_col.markdown(
            f"Answered **{row['predicted_digit']}** ({row['confidence']:.1%}), labelled **{said}**{where} by "
            f"labeller `{who}`, {row['labelled_at']:%Y-%m-%d %H:%M}"
        )
        with buttons_col.container(horizontal=True):  # the two buttons side by side
            for label, decision in (("Accept", "accepted"), ("Reject", "rejected")):
                args = (database, int(row["id"]), decision)
                key = f"{decision}-{row['id']}" + (
                    f"-{row['part']}" if row["part"] else ""
                )  # a number's digits: one each
                st.button(label, key=key, on_click=decide, args=args)


def decide(database: Database, prediction_id: int, decision: str) -> None:
    """A button's callback: it runs before the rerun that draws the list again, which then no longer holds it."""
    try:
        review.review_label(database, prediction_id, decision)
    except DatabaseUnavailable:
        st.session_state["review_problem"] = "The database is unreachable: nothing was changed. Try again in a moment."
