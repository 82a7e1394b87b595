"""The MNIST Digit Classifier page: draw or upload a digit, see all ten confidences, correct the model, browse the log.

    make run          # or: streamlit run app.py

Layout only: preprocessing and inference live in utils.py, storage in db.py. The model and the database handle are
created once per process (st.cache_resource); each section is a fragment, so a click reruns only its own section.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
import torch
from streamlit_drawable_canvas import st_canvas

import db
import utils

CANVAS_SIZE = 280
PEN_WIDTH = (8, 40, 20)  # min, max, default: ~2 px strokes once a full-height digit is scaled into MNIST's 20 px box
HISTORY_SIZES = (50, 100, 500)
BAR_PREDICTED, BAR_OTHER = "#4F46E5", "#CBD5E1"
TABS = {
    "draw": ":material/draw: Draw",
    "upload": ":material/upload: Upload",
    "history": ":material/history: History",
    "stats": ":material/insights: Stats",
}
CORRECTNESS = {"All": None, "Correct": True, "Incorrect": False}

st.set_page_config(page_title="MNIST Digit Classifier", page_icon=":material/draw:", layout="centered")

# streamlit-drawable-canvas 0.13 keeps its toolbar invisible (opacity 0) yet clickable at `top: -1rem`, over the top
# ~30 px of the canvas's right half, until the pointer has hovered for ~0.2 s: a stroke starting there (every touch,
# any fast mouse) was swallowed. The canvas lives in a shadow root, out of reach of page CSS, so this helper injects
# a scoped style into it: the toolbar sits in a band reserved above the canvas, and ignores the pointer unless
# hovered. Undo/redo/reset keep working for mouse users; Clear below serves everyone.
CANVAS_STYLE = """
.dc-root { margin-top: 2.75rem; }
.dc-toolbar { top: -2.65rem !important; }
.dc-toolbar:not([data-pinned="true"]) { pointer-events: none; }
.dc-root:hover > .dc-toolbar, .dc-toolbar:focus-within { pointer-events: auto; }
"""
CANVAS_STYLE_JS = """
export default function () {
  const css = %s;
  const patch = () => {
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const root = host.shadowRoot;
      if (root && !root.querySelector("style[data-canvas-fix]")) {
        const style = document.createElement("style");
        style.dataset.canvasFix = "1";
        style.textContent = css;
        root.appendChild(style);
      }
    }
  };
  patch();
  const observer = new MutationObserver(patch);  // Clear mounts a new canvas: patch it too
  observer.observe(document.body, { childList: true, subtree: true });
  return () => observer.disconnect();
}
""" % json.dumps(CANVAS_STYLE)
canvas_style_fix = st.components.v2.component("mnist_canvas_style_fix", js=CANVAS_STYLE_JS)


# ----------------------------------------------------------------------------------------------------------------
# Process-wide resources


@st.cache_resource(show_spinner="Loading the model…")
def get_checkpoint(model_path: str) -> utils.Checkpoint:
    # One intra-op thread: steadier latency when the other core serves another session (see README benchmarks).
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    return utils.load_checkpoint(model_path)


@st.cache_resource(show_spinner=False)
def get_database() -> db.Database:
    return db.Database()


def database_ready(database: db.Database) -> bool:
    """Schema ready and spooled writes replayed (db.Database.ensure_ready); False when the database is unreachable."""
    try:
        database.ensure_ready()
        return True
    except db.DatabaseUnavailable:
        return False


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces


def predict_and_log(checkpoint: utils.Checkpoint, database: db.Database, image: Any, slot: str) -> None:
    """Classify `image`, log it once, and keep the result in the session under `slot`."""
    try:
        if image is None:  # the canvas has sent nothing yet: nothing was drawn
            raise utils.EmptyDrawingError("Draw a digit first: the canvas is empty.")
        prediction = utils.classify(checkpoint.model, image)
    except utils.EmptyDrawingError as exc:
        st.session_state.pop(slot, None)
        st.warning(str(exc), icon=":material/edit:")
        return
    except ValueError as exc:
        st.session_state.pop(slot, None)
        st.error(f"That image cannot be read: {exc}")
        return
    png = prediction.png
    previous = st.session_state.get(slot)
    if previous and previous["png"] == png:  # Predict pressed again on the same drawing: same row, no duplicate
        return
    row_id = database.log_prediction(
        prediction.digit, prediction.confidence, prediction.probabilities, png, checkpoint.version
    )
    st.session_state[slot] = {"id": row_id, "prediction": prediction, "png": png, "label": None}


def show_result(database: db.Database, slot: str) -> None:
    result = st.session_state.get(slot)
    if not result:
        return
    prediction: utils.Prediction = result["prediction"]
    left, right = st.columns([1, 2])
    with left:
        st.metric("Prediction", prediction.digit)
        st.markdown(f"Confidence **{utils.format_confidence(prediction.confidence)}**")
        st.html(model_input_html(result["png"]))
    with right:
        st.html(probability_bars_html(prediction.probabilities, prediction.digit))
    if result["id"] < 0:
        st.info("The database is unreachable: this prediction is saved locally and will be logged when it is back.")
    feedback(database, slot, result)


def model_input_html(png: bytes) -> str:
    """The 28x28 input, inline (no media request) and pixelated, so the user sees exactly what the model saw."""
    return (
        f'<figure style="margin:0"><img src="{thumbnail(png)}" width="112" height="112" '
        'style="image-rendering:pixelated;border-radius:6px" alt="The 28 by 28 image the model saw">'
        '<figcaption style="font-size:0.8rem;opacity:0.7">What the model saw (28×28)</figcaption></figure>'
    )


def probability_bars_html(probabilities: list[float], predicted: int) -> str:
    """All ten probabilities as plain HTML bars: instant to render (a charting library cost ~24 ms per Predict)."""
    bars = "".join(
        f'<div title="{digit}: {p:.2%}" aria-label="digit {digit}: {p:.1%}" style="flex:1;display:flex;'
        'flex-direction:column;align-items:center;justify-content:flex-end;height:100%">'
        f'<div style="font-size:0.7rem;opacity:0.75">{p:.0%}</div>'
        f'<div style="width:70%;height:{max(p * 100, 1):.1f}%;border-radius:3px 3px 0 0;'
        f'background:{BAR_PREDICTED if digit == predicted else BAR_OTHER}"></div>'
        f'<div style="font-weight:{700 if digit == predicted else 400}">{digit}</div></div>'
        for digit, p in zip(utils.CLASSES, probabilities)
    )
    return (
        '<div role="img" aria-label="Probability of each digit" '
        f'style="display:flex;gap:2px;height:170px;align-items:flex-end">{bars}</div>'
    )


def feedback(database: db.Database, slot: str, result: dict[str, Any]) -> None:
    prediction: utils.Prediction = result["prediction"]
    st.markdown("**Was it right?**")
    label: int | None = None
    if st.button(f"Yes, it's {prediction.digit}", key=f"{slot}-correct", icon=":material/check:"):
        label = prediction.digit
    # Ten one-tap buttons (a dropdown stopped opening after a Predict rerun, seen in Chromium); the form keeps a
    # pick from rerunning anything until Submit.
    with st.form(f"{slot}-label-form", border=False, clear_on_submit=False):
        picked = st.segmented_control(
            "No, the true digit is", utils.CLASSES, key=f"{slot}-picked", selection_mode="single"
        )
        if st.form_submit_button("Submit label"):
            if picked is None:
                st.warning("Pick the true digit first.")
            else:
                label = int(picked)
    if label is not None:
        try:
            database.set_true_label(result["id"], label)
            result["label"] = label
        except ValueError as exc:
            st.error(f"Could not save the label: {exc}")
    if result["label"] is not None:
        verdict = "correct" if result["label"] == prediction.digit else f"wrong (predicted {prediction.digit})"
        where = f"prediction #{result['id']}" if result["id"] > 0 else "this prediction (saved locally)"
        st.success(f"Thanks! Saved true label **{result['label']}** for {where}: {verdict}. You can still change it.")


# ----------------------------------------------------------------------------------------------------------------
# Sections


@st.fragment
def draw_section(checkpoint: utils.Checkpoint, database: db.Database) -> None:
    st.session_state.setdefault("canvas_round", 0)
    canvas = st_canvas(
        stroke_width=st.session_state.get("pen_width", PEN_WIDTH[2]),
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=CANVAS_SIZE,
        width=CANVAS_SIZE,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"canvas-{st.session_state.canvas_round}",
    )
    predict_col, clear_col = st.columns(2)
    if clear_col.button("Clear", width="stretch"):
        st.session_state.canvas_round += 1  # a new key mounts an empty canvas
        st.session_state.pop("draw_result", None)
        st.rerun(scope="fragment")
    if predict_col.button("Predict", type="primary", width="stretch"):
        predict_and_log(checkpoint, database, canvas.image_data, "draw_result")
    show_result(database, "draw_result")


@st.fragment
def upload_section(checkpoint: utils.Checkpoint, database: db.Database) -> None:
    st.write("A photo or scan of one handwritten digit (dark ink on light paper, or light on dark), cropped close.")
    upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"], key="upload")
    if upload is None:
        st.session_state.pop("upload_result", None)
        return
    try:
        image = utils.load_uploaded_image(upload.getvalue())
    except ValueError as exc:
        st.error(str(exc))
        return
    st.image(image, caption=upload.name, width=160)
    if st.button("Predict", type="primary", key="predict-upload"):
        predict_and_log(checkpoint, database, image, "upload_result")
    show_result(database, "upload_result")


def thumbnail(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else None


@st.fragment
def history_section(database: db.Database) -> None:
    digit_col, correct_col, size_col = st.columns(3)
    digit: int | None = digit_col.selectbox(
        "Predicted digit",
        [None, *utils.CLASSES],
        format_func=lambda d: "All" if d is None else str(d),
        key="history_digit",
    )
    correctness = correct_col.selectbox("Feedback", list(CORRECTNESS), key="history_correct")
    size = size_col.selectbox("Rows", HISTORY_SIZES, index=1, key="history_size")
    try:
        rows = database.get_prediction_history(limit=size, digit=digit, correct=CORRECTNESS[correctness])
    except db.DatabaseUnavailable:
        st.warning("History is unavailable while the database is unreachable.")
        return
    if not rows:
        st.info("No predictions yet: draw a digit and press Predict.")
        return
    table = pd.DataFrame(
        {
            "Time": [r["created_at"] for r in rows],
            "Image": [thumbnail(r["image"]) for r in rows],
            "Predicted": [r["predicted_digit"] for r in rows],
            "Confidence": [r["confidence"] for r in rows],
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
            "Confidence": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
            "True label": st.column_config.NumberColumn(format="%d"),
        },
    )
    csv = table.drop(columns=["Image"]).assign(
        Model=[r["model_version"] for r in rows], Probabilities=[r["probabilities"] for r in rows]
    )
    st.download_button("Download CSV", csv.to_csv(index=False), "predictions.csv", "text/csv")


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
        labelled_col.metric("With feedback", f"{stats['labelled']:,}")
        accuracy = stats["accuracy"]
        accuracy_col.metric("Accuracy on feedback", "–" if accuracy is None else f"{accuracy:.1%}")
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
                    x=alt.X("digit:N", axis=alt.Axis(labelAngle=0)),
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
            st.markdown("**Predictions per day** (last 30 days)")
            st.bar_chart(daily[["predictions", "labelled"]], height=200)
    model_card(checkpoint)


def model_card(checkpoint: utils.Checkpoint) -> None:
    meta = checkpoint.meta
    st.markdown("**Model card**")
    facts = {
        "Architecture": "CNN, 5 conv layers (batch norm) + 2 dense layers",
        "Parameters": f"{utils.count_parameters(checkpoint.model):,}",
        "Test accuracy (MNIST, 10k)": f"{meta['test_accuracy']:.2%}" if "test_accuracy" in meta else "unknown",
        "Validation accuracy": f"{meta['val_accuracy']:.2%}" if "val_accuracy" in meta else "unknown",
        "Trained": str(meta.get("trained_at", "unknown")),
        "Epochs": f"{meta.get('best_epoch', '?')} best of {meta.get('epochs_run', '?')}",
        "Training time": f"{meta['train_seconds'] / 60:.1f} min (CPU)" if "train_seconds" in meta else "unknown",
        "Version": checkpoint.version,
    }
    st.table(pd.DataFrame({"": list(facts.values())}, index=list(facts.keys())))


# ----------------------------------------------------------------------------------------------------------------
# Page


def main() -> None:
    st.title("MNIST Digit Classifier")
    st.caption("Draw a digit from 0 to 9, press Predict, and tell the model whether it got it right.")
    model_path = os.environ.get("MODEL_PATH") or str(utils.DEFAULT_MODEL_PATH)
    try:
        checkpoint = get_checkpoint(model_path)
    except utils.ModelLoadError as exc:
        st.error(f"The model could not be loaded. {exc}")
        st.stop()
    database = get_database()
    if not database_ready(database):
        st.warning(
            "The database is unreachable: predictions still work and are saved locally; "
            "they will be logged when it is back.",
            icon="⚠️",
        )
    # Lazy tabs: only the open tab runs, and opening one reruns it, so History and Stats always show the latest rows.
    draw_tab, upload_tab, history_tab, stats_tab = st.tabs(list(TABS.values()), key="tab", on_change="rerun")
    if draw_tab.open:
        with draw_tab:
            # Outside the fragment: a Predict rerun does not re-send them (the pen width is read from the session).
            st.slider("Pen width", *PEN_WIDTH, key="pen_width")
            canvas_style_fix(key="canvas-style-fix")
            draw_section(checkpoint, database)
    if upload_tab.open:
        with upload_tab:
            upload_section(checkpoint, database)
    if history_tab.open:
        with history_tab:
            history_section(database)
    if stats_tab.open:
        with stats_tab:
            stats_section(checkpoint, database)


main()
