"""The Stats page: what the predictions log adds up to (counts, accuracy on feedback, the confusion matrix, volume
and server time per day), the loop (views/loop.py), and the model card of the model answering.

    make run      # then open /stats

Aggregates only, never an image (but the operator's review list): the figures come from the rollup the triggers
keep (storage/schema.py).
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from inference.labels import CLASSES
from inference.network import Checkpoint, count_parameters, knows_not_digit
from storage.pool import DatabaseUnavailable
from storage.database import Database
from views import loop


@st.fragment
def stats_section(checkpoint: Checkpoint, database: Database) -> None:
    try:
        stats = database.get_stats()
    except DatabaseUnavailable:
        st.warning("Statistics are unavailable while the database is unreachable.")
        stats = None
    if stats is not None:
        counts_row(stats)
        if stats["labelled"]:
            feedback_charts(stats)
        if stats["daily"]:
            daily_charts(stats["daily"])
        loop.loop_section(checkpoint, database)
    model_card(checkpoint)


def counts_row(stats: dict[str, Any]) -> None:
    total_col, labelled_col, accuracy_col = st.columns(3)
    total_col.metric("Predictions", f"{stats['total']:,}")
    labelled_col.metric(
        "With feedback",
        f"{stats['labelled'] + stats['not_digit']['said_not_digit']:,}",
        help="Answers users confirmed or corrected; each digit of a number they typed counts as one, as below.",
    )
    accuracy = stats["feedback_accuracy"]
    accuracy_col.metric(
        "Accuracy on feedback",
        "–" if accuracy is None else f"{accuracy:.1%}",
        help="Answers users marked right, of all they gave feedback on: a digit answer to a drawing the user called "
        '"not a digit" counts as wrong, and so does "not a digit" for a digit.',
    )
    counts = stats["not_digit"]
    if counts["flagged"] or counts["said_not_digit"]:
        digits = "–" if stats["accuracy"] is None else f"{stats['accuracy']:.1%}"
        st.caption(
            f"**Not a digit**: the model said so {times(counts['flagged'])}; users said so "
            f"{times(counts['said_not_digit'])} (the model agreed {times(counts['agreed'])} and gave a digit "
            f"{times(counts['missed'])}), and users gave a digit to {counts['false_alarms']:,} drawings the model "
            f"had flagged. On the drawings users called digits alone, accuracy is {digits}."
        )
    numbers_caption(stats.get("numbers"))


def numbers_caption(numbers: dict[str, int] | None) -> None:
    """Numbers (several digits in one drawing) are one prediction each; their digits count in the digit figures."""
    if not numbers or not numbers["read"]:
        return
    whole = f", {numbers['right']:,} of them right as a whole" if numbers["labelled"] else ""
    st.caption(
        f"**Numbers**: {numbers['read']:,} drawings read as several digits ({numbers['shown']:,} shown as a number); "
        f"users gave the number they wrote for {numbers['labelled']:,}{whole}. Their {numbers['digits']:,} digits "
        "count in the digit figures on this page (accuracy, per digit, the confusion matrix) like single digits."
    )


def times(n: int) -> str:
    return "once" if n == 1 else f"{n:,} times"


def feedback_charts(stats: dict[str, Any]) -> None:
    """Accuracy per true digit (all ten on the axis, with or without feedback yet) and the confusion matrix."""
    per_digit = pd.DataFrame(
        {
            "digit": [str(d) for d in CLASSES],
            "accuracy": [stats["per_digit"][d]["accuracy"] for d in CLASSES],
            "labelled": [stats["per_digit"][d]["labelled"] for d in CLASSES],
        }
    )
    st.markdown("**Accuracy per true digit**")
    st.altair_chart(
        alt.Chart(per_digit, height=200)
        .mark_bar()
        .encode(
            x=alt.X("digit:N", axis=alt.Axis(labelAngle=0), scale=alt.Scale(domain=per_digit["digit"].tolist())),
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
    base = alt.Chart(cells, height=320).encode(x=alt.X("predicted:N", axis=alt.Axis(labelAngle=0)), y=alt.Y("true:N"))
    st.markdown("**Confusion matrix** (rows: true digit from feedback, columns: prediction)")
    st.altair_chart(
        base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")))
        + base.mark_text().encode(text=alt.condition(alt.datum.count > 0, "count:Q", alt.value(""))),
        width="stretch",
    )


def daily_charts(days: list[dict[str, Any]]) -> None:
    daily = pd.DataFrame(days).rename(columns={"day": "Day"}).set_index("Day")
    volume_col, latency_col = st.columns(2)
    volume_col.markdown("**Predictions per day** (last 30 days)")
    volume_col.bar_chart(daily[["predictions", "labelled"]], height=200, stack=False)  # labelled rows are a subset
    latency_col.markdown("**Server time per prediction** (preprocess + model, ms)")
    latency = daily[["inference_p50_ms", "inference_p95_ms"]].rename(
        columns={"inference_p50_ms": "p50", "inference_p95_ms": "p95"}
    )
    latency_col.altair_chart(latency_chart(latency.astype(float)), width="stretch")


def latency_chart(latency: pd.DataFrame) -> alt.Chart:
    """p50 and p95 per day as lines with a point on each day: a single day still shows its two values."""
    long = latency.reset_index().melt("Day", var_name="percentile", value_name="ms").dropna()
    return (
        alt.Chart(long, height=200)
        .mark_line(point=True)
        .encode(
            x=alt.X("Day:T", title=None),
            y=alt.Y("ms:Q", title="ms"),
            color=alt.Color("percentile:N", title=None),
            tooltip=[alt.Tooltip("Day:T"), "percentile", alt.Tooltip("ms:Q", format=".1f")],
        )
    )


def registry_version(meta: dict[str, Any]) -> str:
    """The checkpoint's own record of its registered version ("mnist-digit-classifier v7, run 1a2b3c4d")."""
    if not meta.get("model_version"):
        return "not registered (trained before the model registry)"
    run = f", run {str(meta['run_id'])[:8]}" if meta.get("run_id") else ""
    return f"{meta.get('registered_model', 'model')} v{meta['model_version']}{run}"


def not_digit_fact(checkpoint: Checkpoint) -> str:
    """What the model card says of the "not a digit" answer: the held-out figure and the threshold behind it."""
    figures = checkpoint.meta.get("not_digit") or {}
    if not knows_not_digit(checkpoint.model):
        return "not detected (a model with ten outputs)"
    if "heldout_flagged" not in figures:
        return f"said above {checkpoint.model.reject_threshold:.0%} probability"
    return (
        f"{figures['heldout_flagged']:.1%} of {figures['heldout_count']:,} held-out non-digits flagged, "
        f"{figures['test_digits_kept']:.2%} of test digits kept (threshold {checkpoint.model.reject_threshold:.2f})"
    )


def model_card(checkpoint: Checkpoint) -> None:
    meta = checkpoint.meta
    st.markdown("**Model card**")
    facts = {
        "Architecture": "CNN, 5 conv layers (batch norm) + 2 dense layers"
        + (', 11 outputs (digits and "not a digit")' if knows_not_digit(checkpoint.model) else ""),
        "Parameters": f"{count_parameters(checkpoint.model):,}",
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
    st.table(pd.DataFrame({"Value": list(facts.values())}, index=list(facts.keys())), hide_header=True)
