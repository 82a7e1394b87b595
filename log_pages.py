"""The History and Stats pages: the predictions log read back, a page at a time, and what it adds up to.

    make run      # then open /history or /stats (app.py mounts these pages beside Draw and Upload)

Layout only, like app.py: the queries live in db.py (reads.py). Each page is a fragment, so its filters and page
buttons rerun only the page itself.
"""

from __future__ import annotations

import base64
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

import db
import utils

HISTORY_SIZES = (50, 100, 500)
CORRECTNESS = {"All": None, "Correct": True, "Incorrect": False}
KINDS = {"All": None, "Digits": False, "Not a digit": True}  # History: what the model or the user called it
EXPORT_PATH = "export/predictions.csv"  # served by server.py next to the page


def thumbnail(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None


def not_digit_text(row: dict[str, Any]) -> str:
    """Who called the drawing "not a digit": the model (its answer), the user (their feedback), both, or nobody."""
    model, user = row.get("is_digit") is False, bool(row.get("labelled_not_digit"))
    return " + ".join(who for who, said in (("model", model), ("user", user)) if said)


def export_url(digit: int | None, correct: bool | None, not_digit: bool | None) -> str:
    """The streamed CSV export (server.py) for History's filters, relative to the page."""
    query = {"digit": digit, "correct": correct, "not_digit": not_digit}
    params = "&".join(f"{k}={str(v).lower()}" for k, v in query.items() if v is not None)
    return f"{EXPORT_PATH}?{params}" if params else EXPORT_PATH


@st.fragment
def history_section(database: db.Database) -> None:
    digit_col, correct_col, kind_col, size_col = st.columns(4)
    digit: int | None = digit_col.selectbox(
        "Predicted digit",
        [None, *utils.CLASSES],
        format_func=lambda d: "All" if d is None else str(d),
        key="history_digit",
    )
    correctness = correct_col.selectbox("Feedback", list(CORRECTNESS), key="history_correct")
    kind = kind_col.selectbox("Kind", list(KINDS), key="history_kind")
    size = size_col.selectbox("Rows", HISTORY_SIZES, index=1, key="history_size")
    filters = (digit, CORRECTNESS[correctness], KINDS[kind], size)
    # Pages: the (created_at, id) each page starts after, newest page first; new filters start again at the top.
    if st.session_state.get("history_filters") != filters:
        st.session_state.history_filters = filters
        st.session_state.history_pages = [None]
    pages: list[Any] = st.session_state.history_pages
    try:
        rows = database.get_prediction_history(
            limit=size, digit=digit, correct=filters[1], not_digit=filters[2], before=pages[-1]
        )
    except db.DatabaseUnavailable:
        st.warning("History is unavailable while the database is unreachable.")
        return
    if not rows and len(pages) == 1:
        st.info("No predictions yet: draw a digit and press Predict." if filters[:3] == (None,) * 3 else "No matches.")
        return
    table = pd.DataFrame(
        {
            "Time": [r["created_at"] for r in rows],
            "Image": [thumbnail(r["image"]) for r in rows],
            "Predicted": [r["predicted_digit"] for r in rows],  # the best digit, even where it said "not a digit"
            "Confidence": [utils.format_confidence(r["confidence"]) for r in rows],  # as the answer said it
            "Not a digit": [not_digit_text(r) for r in rows],
            "True label": [r["true_label"] for r in rows],
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
            "Not a digit": st.column_config.TextColumn(
                help='Who called the drawing "not a digit": the model (its answer), the user (the feedback), or both'
            ),
            "True label": st.column_config.NumberColumn(format="%d"),
        },
    )
    newer_col, where_col, older_col, export_col = st.columns((1, 2, 1, 2), vertical_alignment="center")
    if newer_col.button("‹ Newer", disabled=len(pages) == 1, width="stretch"):
        pages.pop()
        st.rerun(scope="fragment")
    where_col.caption(f"Page {len(pages)}: {len(rows)} rows, newest first")
    if older_col.button("Older ›", disabled=len(rows) < size, width="stretch"):
        pages.append((rows[-1]["created_at"], rows[-1]["id"]))
        st.rerun(scope="fragment")
    # Every matching row, not only this page: streamed by the server, whatever the size (no images; see server.py).
    export_col.link_button("Download CSV", export_url(digit, filters[1], filters[2]), width="stretch")


@st.fragment
def stats_section(checkpoint: utils.Checkpoint, database: db.Database) -> None:
    try:
        stats = database.get_stats()
    except db.DatabaseUnavailable:
        st.warning("Statistics are unavailable while the database is unreachable.")
        stats = None
    if stats is not None:
        total_col, labelled_col, accuracy_col = st.columns(3)
        total_col.metric("Predictions", f"{stats['total']:,}")
        labelled_col.metric("With feedback", f"{stats['labelled'] + stats['not_digit']['said_not_digit']:,}")
        accuracy = stats["accuracy"]
        accuracy_col.metric("Accuracy on feedback", "–" if accuracy is None else f"{accuracy:.1%}")
        counts = stats["not_digit"]
        if counts["flagged"] or counts["said_not_digit"]:
            st.caption(
                f"**Not a digit**: the model said so {counts['flagged']:,} times; users said so "
                f"{counts['said_not_digit']:,} times (the model agreed on {counts['agreed']:,}, missed "
                f"{counts['missed']:,}), and gave a digit for {counts['false_alarms']:,} the model had flagged. "
                "Digit accuracy counts only answers that are digits."
            )
        if stats["labelled"]:
            per_digit = pd.DataFrame(
                {
                    "digit": [str(d) for d in utils.CLASSES],
                    "accuracy": [stats["per_digit"][d]["accuracy"] for d in utils.CLASSES],
                    "labelled": [stats["per_digit"][d]["labelled"] for d in utils.CLASSES],
                }
            )
            st.markdown("**Accuracy per true digit**")
            st.altair_chart(
                alt.Chart(per_digit, height=200)
                .mark_bar()
                .encode(
                    # All ten digits on the axis, with or without feedback yet (no single giant bar).
                    x=alt.X(
                        "digit:N", axis=alt.Axis(labelAngle=0), scale=alt.Scale(domain=per_digit["digit"].tolist())
                    ),
                    y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
                    tooltip=["digit", alt.Tooltip("accuracy:Q", format=".1%"), "labelled"],
                ),
                width="stretch",
            )
            cells = pd.DataFrame(
                [
                    {"true": str(t), "predicted": str(p), "count": n}
                    for t, row in enumerate(stats["confusion"])
                    for p, n in enumerate(row)
                ]
            )
            base = alt.Chart(cells, height=320).encode(
                x=alt.X("predicted:N", axis=alt.Axis(labelAngle=0)), y=alt.Y("true:N")
            )
            st.markdown("**Confusion matrix** (rows: true digit from feedback, columns: prediction)")
            st.altair_chart(
                base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")))
                + base.mark_text().encode(text=alt.condition(alt.datum.count > 0, "count:Q", alt.value(""))),
                width="stretch",
            )
        if stats["daily"]:
            daily = pd.DataFrame(stats["daily"]).rename(columns={"day": "Day"}).set_index("Day")
            volume_col, latency_col = st.columns(2)
            volume_col.markdown("**Predictions per day** (last 30 days)")
            volume_col.bar_chart(
                daily[["predictions", "labelled"]], height=200, stack=False
            )  # labelled rows are a subset
            latency_col.markdown("**Server time per prediction** (preprocess + model, ms)")
            latency = daily[["inference_p50_ms", "inference_p95_ms"]].rename(
                columns={"inference_p50_ms": "p50", "inference_p95_ms": "p95"}
            )
            latency_col.line_chart(latency.astype(float), height=200)
    model_card(checkpoint)


def registry_version(meta: dict[str, Any]) -> str:
    """The checkpoint's own record of its registered version ("mnist-digit-classifier v7, run 1a2b3c4d")."""
    if not meta.get("model_version"):
        return "not registered (trained before the model registry)"
    run = f", run {str(meta['run_id'])[:8]}" if meta.get("run_id") else ""
    return f"{meta.get('registered_model', 'model')} v{meta['model_version']}{run}"


def not_digit_fact(checkpoint: utils.Checkpoint) -> str:
    """What the model card says of the "not a digit" answer: the held-out figure and the threshold behind it."""
    figures = checkpoint.meta.get("not_digit") or {}
    if not utils.knows_not_digit(checkpoint.model):
        return "not detected (a model with ten outputs)"
    if "heldout_flagged" not in figures:
        return f"said above {checkpoint.model.reject_threshold:.0%} probability"
    return (
        f"{figures['heldout_flagged']:.1%} of {figures['heldout_count']:,} held-out non-digits flagged, "
        f"{figures['test_digits_kept']:.2%} of test digits kept (threshold {checkpoint.model.reject_threshold:.2f})"
    )


def model_card(checkpoint: utils.Checkpoint) -> None:
    meta = checkpoint.meta
    st.markdown("**Model card**")
    facts = {
        "Architecture": "CNN, 5 conv layers (batch norm) + 2 dense layers"
        + (', 11 outputs (digits and "not a digit")' if utils.knows_not_digit(checkpoint.model) else ""),
        "Parameters": f"{utils.count_parameters(checkpoint.model):,}",
        "Test accuracy (MNIST, 10k)": f"{meta['test_accuracy']:.2%}" if "test_accuracy" in meta else "unknown",
        "Validation accuracy": f"{meta['val_accuracy']:.2%}" if "val_accuracy" in meta else "unknown",
        "Trained": str(meta.get("trained_at", "unknown")),
        "Epochs": f"{meta.get('best_epoch', '?')} best of {meta.get('epochs_run', '?')}",
        "Training time": f"{meta['train_seconds'] / 60:.1f} min (CPU)" if "train_seconds" in meta else "unknown",
        "Not a digit": not_digit_fact(checkpoint),
        "Calibration (ECE, MNIST test)": (
            f"{meta['not_digit']['ece_test']:.2%}"
            if (meta.get("not_digit") or {}).get("ece_test") is not None
            else "unknown"
        ),
        "Registry version": registry_version(meta),
        "File version": checkpoint.version,
    }
    st.table(pd.DataFrame({"": list(facts.values())}, index=list(facts.keys())))
