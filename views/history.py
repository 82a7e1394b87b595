"""The History page: the predictions log read back, a page at a time, with History's filters and the CSV export.

    make run      # then open /history (app.py mounts this page beside Draw, Upload and Stats)

A visitor sees only the predictions made from this browser ("Your predictions: N"); the operator, signed in with
OPERATOR_PASSWORD, sees every prediction ("All predictions: N") and can export them.

Layout only, like app.py: the queries live in storage/reads.py (through db.Database). The page is a fragment, so
its filters and page buttons rerun only the page itself.
"""

from __future__ import annotations

import base64
from typing import Any

import pandas as pd
import streamlit as st

from access import operator
from inference.labels import CLASSES, NOT_A_DIGIT
from inference.predict import format_confidence
from storage.pool import DatabaseUnavailable
from storage.reads import Reads
from views import session

NOT_A_DIGIT_LABEL = NOT_A_DIGIT.capitalize()  # "Not a digit", as the feedback button and the column say it
HISTORY_SIZES = (50, 100, 500)
CORRECTNESS = {"All": None, "Correct": True, "Incorrect": False}
KINDS = {"All": None, "Digits": False, NOT_A_DIGIT_LABEL: True}  # what the model or the user called it
EXPORT_PATH = "export/predictions.csv"  # served by server.py next to the page
Filters = tuple[int | None, bool | None, bool | None, int]  # digit, correct, not a digit, rows per page


def thumbnail(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None


def not_digit_text(row: dict[str, Any]) -> str:
    """Who called the drawing "not a digit": the model (its answer), the user (their feedback), both, or nobody."""
    model, user = row.get("is_digit") is False, bool(row.get("labelled_not_digit"))
    return " + ".join(who for who, said in (("model", model), ("user", user)) if said)


def true_label_text(row: dict[str, Any]) -> str:
    """The user's answer as the feedback buttons said it: the digit, "Not a digit", the number, or nothing yet."""
    if row.get("labelled_not_digit"):
        return NOT_A_DIGIT_LABEL
    if row.get("true_number") is not None:
        return str(row["true_number"])
    return "" if row.get("true_label") is None else str(row["true_label"])


def export_url(digit: int | None, correct: bool | None, not_digit: bool | None, link: str | None = None) -> str:
    """The streamed CSV export (server.py) for History's filters, relative to the page; `link`: a one-use token
    that lets a signed-in operator's browser download it without typing the password again."""
    query = {"digit": digit, "correct": correct, "not_digit": not_digit, "link": link}
    params = "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in query.items() if v is not None)
    return f"{EXPORT_PATH}?{params}" if params else EXPORT_PATH


def filters_row() -> Filters:
    """The four selectors above the table: predicted digit, feedback, kind and rows per page."""
    digit_col, correct_col, kind_col, size_col = st.columns(4)
    digit: int | None = digit_col.selectbox(
        "Predicted digit",
        [None, *CLASSES],
        format_func=lambda d: "All" if d is None else str(d),
        key="history_digit",
    )
    correctness = correct_col.selectbox("Feedback", list(CORRECTNESS), key="history_correct")
    kind = kind_col.selectbox("Kind", list(KINDS), key="history_kind")
    size = size_col.selectbox("Rows", HISTORY_SIZES, index=1, key="history_size")
    return digit, CORRECTNESS[correctness], KINDS[kind], size


def history_table(rows: list[dict[str, Any]]) -> None:
    table = pd.DataFrame(
        {
            "Time": [r["created_at"] for r in rows],
            "Image": [thumbnail(r["image"]) for r in rows],
            # The best digit, even where it said "not a digit"; a number's digits under Number.
            "Predicted": pd.array([None if r.get("number") else r["predicted_digit"] for r in rows], dtype="Int64"),
            "Number": [r.get("number") or "" for r in rows],
            "Confidence": [format_confidence(r["confidence"]) for r in rows],  # as the answer said it
            NOT_A_DIGIT_LABEL: [not_digit_text(r) for r in rows],
            "True label": [true_label_text(r) for r in rows],
            "Correct": [{None: "", True: "✓", False: "✗"}[r["correct"]] for r in rows],
            "ID": [r["id"] for r in rows],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "Time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "Image": st.column_config.ImageColumn(width="small"),
            NOT_A_DIGIT_LABEL: st.column_config.TextColumn(
                help='Who called the drawing "not a digit": the model (its answer), the user (the feedback), or both'
            ),
            "True label": st.column_config.TextColumn(
                help='What the user said it is: a digit, "Not a digit", or the number they wrote'
            ),
            "Number": st.column_config.TextColumn(help="Several digits read at once: each, left to right"),
        },
    )


def pager(pages: list[Any], rows: list[dict[str, Any]], filters: Filters, signed_in: bool) -> None:
    """Newer / Older buttons (keyset pages), where we are, and, for the operator, the CSV export of every matching
    row."""
    digit, correct, not_digit, size = filters
    newer_col, where_col, older_col, export_col = st.columns((1, 2, 1, 2), vertical_alignment="center")
    if newer_col.button("‹ Newer", disabled=len(pages) == 1, width="stretch"):
        pages.pop()
        st.rerun(scope="fragment")
    where_col.caption(f"Page {len(pages)}: {len(rows)} rows, newest first")
    if older_col.button("Older ›", disabled=len(rows) < size, width="stretch"):
        pages.append((rows[-1]["created_at"], rows[-1]["id"]))
        st.rerun(scope="fragment")
    # Every matching row, not only this page: streamed by the server, whatever the size (no images; see server.py).
    if signed_in:
        link = operator.export_links.issue()
        export_col.link_button("Download CSV", export_url(digit, correct, not_digit, link), width="stretch")


@st.fragment
def history_section(database: Reads) -> None:
    """A visitor sees the predictions made from this browser; the operator, signed in, sees all of them."""
    signed_in = session.is_operator()
    visitor = None if signed_in else session.visitor_id()
    try:
        total = database.count_predictions(visitor)
    except DatabaseUnavailable:
        st.warning("History is unavailable while the database is unreachable.")
        session.operator_bar()
        return
    st.markdown(f"**All predictions: {total:,}**" if signed_in else f"**Your predictions: {total:,}**")
    show_rows(database, visitor, signed_in)
    session.operator_bar()


def show_rows(database: Reads, visitor: str | None, signed_in: bool) -> None:
    filters = filters_row()
    digit, correct, not_digit, size = filters
    # Pages: the (created_at, id) each page starts after, newest page first; new filters start again at the top.
    if st.session_state.get("history_filters") != (*filters, visitor):  # the operator's view starts at the top too
        st.session_state.history_filters = (*filters, visitor)
        st.session_state.history_pages = [None]
    pages: list[Any] = st.session_state.history_pages
    try:
        rows = database.get_prediction_history(
            limit=size, digit=digit, correct=correct, not_digit=not_digit, before=pages[-1], visitor=visitor
        )
    except DatabaseUnavailable:
        st.warning("History is unavailable while the database is unreachable.")
        return
    if not rows and len(pages) == 1:
        st.info("No predictions yet: draw a digit and press Predict." if filters[:3] == (None,) * 3 else "No matches.")
        return
    history_table(rows)
    pager(pages, rows, filters, signed_in)
