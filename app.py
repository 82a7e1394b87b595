"""The MNIST Digit Classifier page: draw or upload a digit, see all ten confidences, correct the model, browse the log.

    make run          # or: streamlit run server.py (this page plus the CSV export route)

Layout only: preprocessing and inference live behind utils.py (inference/), storage behind db.py (storage/), the
History and Stats pages in views/. The model and the database handle are created once per process
(st.cache_resource). Each page (Draw, Upload, History, Stats) is an st.navigation page, opened from a segmented
control, and its interactive part a fragment, so a click reruns only its own section.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import streamlit as st
from streamlit.navigation.page import StreamlitPage
from streamlit_drawable_canvas import st_canvas

import db
import utils
from access import limits
from serve import metrics, record, resources
from views import answer, history, number, session, stats

DRAW_COLUMNS = (0.42, 0.58)  # of the centred page's 736 px: the 280 px canvas, and the answer beside it
SOURCES = {"draw_result": "page", "upload_result": "upload"}  # a result's slot -> the row's source (db.SOURCES)
NOT_A_DIGIT_ANSWER = "This doesn't look like a digit"  # the page's words for the model's "not a digit" answer
COMPONENTS_DIR = Path(__file__).resolve().parent / "components"  # the custom elements' CSS and JS, read at import

st.set_page_config(page_title="MNIST Digit Classifier", page_icon=":material/draw:", layout="centered")

# The canvas's invisible toolbar swallowed strokes starting in its top-right band, and the canvas lives in a shadow
# root out of reach of page CSS: canvas_fix.js injects a scoped style there (why: components/canvas_fix.js), and
# adds page.css (the answer in the first screenful on small screens) at no element's cost.
PAGE_STYLE = (COMPONENTS_DIR / "page.css").read_text()
CANVAS_STYLE = (COMPONENTS_DIR / "canvas_fix.css").read_text()
canvas_style_fix = st.components.v2.component(
    "mnist_canvas_style_fix", js=(COMPONENTS_DIR / "canvas_fix.js").read_text()
)

# The result panel under the Prediction metric: confidence, the 28x28 input the model saw, a bar for each of the
# ten probabilities, and the feedback controls ("Yes, it's N" in one click, or pick the true digit 0-9 and Submit).
# One Components v2 element instead of a chart and five Streamlit widgets: the browser renders one element, not six.
# Mounted only while there is a prediction: an empty panel would be re-rendered at every rerun (BENCHMARKS.md).
# Data in: {digit, confidence, probabilities, image, label, is_digit, not_digit_score, not_digit}. One trigger out,
# `label`: a digit, or the `not_digit` value for "Not a digit", which the server validates before storing it.
result_panel = st.components.v2.component(
    "mnist_result_panel",
    css=(COMPONENTS_DIR / "result_panel.css").read_text(),
    js=(COMPONENTS_DIR / "result_panel.js").read_text(),
)


# ----------------------------------------------------------------------------------------------------------------
# Process-wide resources


# Both are the process's own (serve/resources.py), shared with the HTTP API: the model is loaded once per process.
@st.cache_resource(show_spinner="Loading the model…", max_entries=2)  # per file version: a promoted one is used next
def get_checkpoint(model_path: str, file_version: tuple[int, int, int]) -> utils.Checkpoint:
    return resources.checkpoint(model_path)


@st.cache_resource(show_spinner=False)
def get_database() -> db.Database:
    return resources.database()


def database_ready(database: db.Database) -> bool:
    """Schema ready and spooled writes replayed (db.Database.ensure_ready); False when the database is unreachable."""
    try:
        database.ensure_ready()
        return True
    except db.DatabaseUnavailable:
        return False


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces


def classify_once(
    checkpoint: utils.Checkpoint, slot: str, source: bytes | None, load: Callable[[], Any]
) -> tuple[utils.NumberReading, float, bytes | None]:
    """Read the image whose encoded bytes are `source` (decoded by `load()` only when needed) as a digit or a number,
    reusing the last answer for the same bytes; returns it with the milliseconds it took (logged with the row) and,
    for a number, the drawing with its boxes. The canvas sends its image when a stroke ends, so the Draw page reads
    it then (2-3 ms) and Predict only shows and logs it. Raises like `utils.classify`."""
    if not source:  # the canvas has sent nothing yet: nothing was drawn
        raise utils.EmptyDrawingError("Draw a digit first: the canvas is empty.")
    digest = hashlib.blake2b(source + checkpoint.version.encode(), digest_size=16).digest()  # a new model: anew
    cache_key = f"{slot}-classified"
    cached = st.session_state.get(cache_key)
    if cached is not None and cached[0] == digest:
        return cached[1:]
    started = time.perf_counter()
    with utils.admitted(source):  # decoding and answering: bounded with every other image request in the process
        image = load()
        reading = utils.read_number(checkpoint.model, image)
        elapsed_ms = (time.perf_counter() - started) * 1000
        picture = None if reading.is_single else number.annotated_drawing(image, reading)
    st.session_state[cache_key] = (digest, reading, elapsed_ms, picture)
    return reading, elapsed_ms, picture


def start_prediction(checkpoint: utils.Checkpoint, slot: str, source: bytes | None, load: Callable[[], Any]) -> None:
    """Predict pressed: keep the new result in the session under `slot` (it is logged when first shown)."""
    try:
        reading, inference_ms, picture = classify_once(checkpoint, slot, source, load)
    except utils.EmptyDrawingError as exc:
        st.session_state.pop(slot, None)
        metrics.refused(SOURCES[slot])
        st.warning(str(exc), icon=":material/edit:")
        return
    except ValueError as exc:
        st.session_state.pop(slot, None)
        metrics.refused(SOURCES[slot])
        st.error(f"That image cannot be read: {exc}")
        return
    png = reading.png  # a digit's 28x28 input, or a number's side by side
    previous = st.session_state.get(slot)
    if previous and previous["png"] == png:  # Predict pressed again on the same drawing: same row, no duplicate
        return
    wait = limits.predictions().check(session.client())
    if wait > 0:  # nothing is kept, so nothing is written
        st.session_state.pop(slot, None)
        metrics.refused(SOURCES[slot])
        st.warning(
            f"Too many predictions from here: try again in {limits.retry_after(wait)} s.", icon=":material/timer:"
        )
        return
    st.session_state[slot] = {
        "id": None,
        "prediction": reading.parts[0],
        "reading": reading,
        "picture": picture,
        "checkpoint": checkpoint,  # the model that answered: its version is logged, even if another is swapped in
        "png": png,
        "label": None,
        "inference_ms": inference_ms,
    }


def show_result(checkpoint: utils.Checkpoint, database: db.Database, slot: str) -> None:
    """The result kept under `slot`, if any: the answer first (st.metric), then logging (once per prediction), then
    the result panel whose feedback controls act on the logged row."""
    result = st.session_state.get(slot)
    if not result:
        return
    prediction: utils.Prediction = result["prediction"]
    # Logged (or spooled) before it is shown: an answer a user has seen is never lost, even if this process dies
    # the next moment (a replica killed behind the proxy). The wait is ~1 ms, at most DB_WRITE_TIMEOUT when hung.
    if result["id"] is None:  # waits at most DB_WRITE_TIMEOUT (~1 s), then the write is kept in the spool
        try:
            result["id"] = record.log_reading(
                database,
                result.get("checkpoint", checkpoint),  # a session's result from before the swap-aware page
                result.get("reading") or prediction,  # a session's result from before numbers: its prediction
                result.get("inference_ms"),
                SOURCES[slot],
                session.visitor_id(),
            )
        except db.SpoolFull:  # not kept, so not shown: the next Predict (or rerun) tries again
            st.error(answer.SPOOL_FULL + " Please try again in a few minutes.", icon=":material/cloud_off:")
            return
    elif result["id"] < 0:
        result["id"] = database.resolve(result["id"])  # replayed since it was spooled: its row's real id
    if result.get("reading") and not result["reading"].is_single:  # several digits: the number's answer and feedback
        number.number_answer(result, database, slot, lambda: metrics.labelled(SOURCES[slot]))
        return
    if prediction.is_digit:
        st.metric("Prediction", prediction.digit)
    else:  # letters, shapes, scribbles: say so rather than give a confident wrong digit
        # A sentence, not a number: page.css lets it wrap inside this container instead of ending in "…".
        with st.container(key="not-a-digit-answer"):
            st.metric("Prediction", NOT_A_DIGIT_ANSWER)
        st.caption(f"Best guess **{prediction.digit}** at {utils.format_confidence(prediction.confidence)}")
    # Said next to the answer (inside the first screenful), and gone as soon as the spool has been replayed.
    waiting = result["id"] < 0 or (result.get("label_spooled") and database.pending() > 0)
    if waiting:
        st.warning(
            "The database is unreachable or not answering: this prediction (and any label you give it) is saved "
            "locally and will be logged as soon as it is back.",
            icon=":material/cloud_off:",
        )
    result_panel(
        data=answer.panel_data(result),
        key=f"{slot}-panel",
        on_label_change=functools.partial(
            answer.save_feedback, database, slot, f"{slot}-panel", "label", lambda: metrics.labelled(SOURCES[slot])
        ),
    )
    if result.get("label_error"):
        st.error(result.pop("label_error"))
    elif result["label"] is not None:
        where = f"prediction #{result['id']}" if not waiting else "this prediction (saved locally)"
        given, verdict = answer.feedback_verdict(prediction, result["label"])
        st.success(f"Thanks! Saved {given} for {where}: {verdict}. You can still change it.")


# ----------------------------------------------------------------------------------------------------------------
# Sections


@st.fragment
def draw_section(checkpoint: utils.Checkpoint, database: db.Database) -> None:
    st.session_state.setdefault("canvas_round", 0)
    # Canvas left, answer right: on a laptop the answer, its confidence and any note about it sit beside the
    # drawing, inside the first screenful; on a phone the columns stack (Streamlit does below 640 px).
    drawing_col, result_col = st.columns(DRAW_COLUMNS, gap="medium")
    with drawing_col:
        canvas = st_canvas(
            stroke_width=st.session_state.get("pen_width", utils.DEFAULT_PEN_WIDTH),
            stroke_color="#FFFFFF",
            background_color="#000000",
            height=utils.CANVAS_SIZE,
            width=utils.CANVAS_SIZE,
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"canvas-{st.session_state.canvas_round}",
        )
        buttons = st.container(horizontal=True)
        predict_clicked = buttons.button("Predict", type="primary", width="stretch")
        clear_clicked = buttons.button("Clear", width="stretch")
    # The canvas's image as the browser sent it (any bytes a client chooses to send over the websocket): decoded
    # through the same bounded door as an upload, with the canvas's own limits, and only when it is new.
    try:
        drawing = canvas.image_bytes
    except (ValueError, TypeError):  # not a base64 data URL: kept as bytes the decoder will refuse, with a message
        drawing = b"not a data URL"

    def pixels() -> Any:
        return utils.load_canvas_image(drawing or b"")

    if clear_clicked:
        st.session_state.canvas_round += 1  # a new key mounts an empty canvas
        st.session_state.pop("draw_result", None)
        st.rerun(scope="fragment")
    with result_col:
        if predict_clicked:
            start_prediction(checkpoint, "draw_result", drawing, pixels)
        elif drawing:  # a stroke ended: classify now, so Predict only shows and logs it (nothing is written here)
            with contextlib.suppress(ValueError):
                classify_once(checkpoint, "draw_result", drawing, pixels)
        if "draw_result" not in st.session_state:
            st.caption("Draw a digit, then press Predict: the model's confidence for every digit shows here.")
        show_result(checkpoint, database, "draw_result")


@st.fragment
def upload_section(checkpoint: utils.Checkpoint, database: db.Database) -> None:
    st.write("A photo or scan of one handwritten digit, or of a number (dark ink on light paper, or light on dark).")
    upload = st.file_uploader("Image", type=list(utils.UPLOAD_EXTENSIONS), key="upload")
    if upload is None:
        st.session_state.pop("upload_result", None)
        return
    if st.session_state.get("upload_counted") != upload.file_id:  # each file once, not each rerun
        wait = limits.uploads().check(session.client())
        if wait > 0:
            metrics.refused("upload")
            st.warning(
                f"Too many uploads from here: try again in {limits.retry_after(wait)} s.", icon=":material/timer:"
            )
            return
        st.session_state["upload_counted"] = upload.file_id
    data = upload.getvalue()
    try:
        with utils.admitted(data):  # the decode and its preview, bounded with every other image request
            image = utils.load_uploaded_image(data)
            thumbnail = utils.preview(image)
    except ValueError as exc:  # unreadable, too large, or the server busy (utils.Busy): said in the user's words
        metrics.refused("upload")
        st.error(str(exc))
        return
    st.image(thumbnail, caption=upload.name[:80], width=160)  # a small copy, never the original
    if st.button("Predict", type="primary", key="predict-upload"):
        start_prediction(checkpoint, "upload_result", data, lambda: image)
    show_result(checkpoint, database, "upload_result")


# ----------------------------------------------------------------------------------------------------------------
# Page


def page_switcher(pages: list[StreamlitPage], current: StreamlitPage) -> None:
    """The page bar: a segmented control rather than st.navigation's top bar. Streamlit's frontend renders the top
    bar (a responsive overflow menu) again at each step of every rerun, which slows each Predict; a segmented
    control in its place costs next to nothing."""
    by_title = {page.title: page for page in pages}
    target = st.session_state.pop("page_target", None)  # set by a click, in the previous run's callback
    if target in by_title and target != current.title:
        st.switch_page(by_title[target])  # reruns now, on the new page (and its URL)
    # Follows the URL and the back button, and undoes a click on the page already open (that would deselect it).
    st.session_state["page"] = current.title
    st.segmented_control(
        "Page",
        list(by_title),
        format_func=lambda title: f"{by_title[title].icon} {title}",
        key="page",
        on_change=lambda: st.session_state.update(page_target=st.session_state["page"]),
        label_visibility="collapsed",
    )


def main() -> None:
    # The h1 of st.title, as markdown: Streamlit's frontend renders every element again at each step of a rerun, and
    # its heading element costs more to render than a markdown h1.
    st.markdown("# MNIST Digit Classifier")
    try:
        checkpoint = get_checkpoint(resources.model_path(), resources.file_version())
    except utils.ModelLoadError as exc:
        st.error(f"The model could not be loaded. {exc}")
        st.stop()
    database = get_database()

    def draw_page() -> None:
        # Outside the fragment: a Predict rerun does not re-send them (the pen width is read from the session).
        st.slider(
            "Pen width",
            utils.PEN_WIDTHS[0],
            utils.PEN_WIDTHS[-1],
            utils.DEFAULT_PEN_WIDTH,
            step=utils.PEN_WIDTH_STEP,
            key="pen_width",
        )
        draw_section(checkpoint, database)

    # Only the open page runs, and opening one runs it afresh: History and Stats always show the latest rows.
    pages = [
        st.Page(draw_page, title="Draw", icon=":material/draw:", url_path="draw", default=True),
        st.Page(
            lambda: upload_section(checkpoint, database), title="Upload", icon=":material/upload:", url_path="upload"
        ),
        st.Page(
            lambda: history.history_section(database), title="History", icon=":material/history:", url_path="history"
        ),
        st.Page(
            lambda: stats.stats_section(checkpoint, database),
            title="Stats",
            icon=":material/insights:",
            url_path="stats",
        ),
    ]
    current = st.navigation(pages, position="hidden")  # each page keeps its own URL (/upload, /history, ...)
    page_switcher(pages, current)
    # components/page.css on the document and canvas_fix.css in every canvas, for whichever page is opened first (by
    # its address too): one element with no UI of its own, outside the fragments, kept across page switches.
    canvas_style_fix(key="page-style-fix", data={"css": CANVAS_STYLE, "pageCss": PAGE_STYLE})
    if not database_ready(database):
        st.warning(
            "The database is unreachable: predictions still work and are saved locally; "
            "they will be logged when it is back.",
            icon="⚠️",
        )
    current.run()


main()
