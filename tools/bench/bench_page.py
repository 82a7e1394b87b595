"""The trivial page the page benchmark compares against: the same canvas, a button that only echoes the image size.

streamlit run tools/bench/bench_page.py     (tools/bench/benchmark.py starts it)
"""

import streamlit as st
from streamlit_drawable_canvas import st_canvas

st.session_state.setdefault("round", 0)
canvas = st_canvas(
    stroke_width=20,
    stroke_color="#FFFFFF",
    background_color="#000000",
    height=280,
    width=280,
    return_image_data=True,
    key=f"canvas-{st.session_state['round']}",
)
predict_col, clear_col = st.columns(2)
if clear_col.button("Clear"):
    st.session_state["round"] += 1
    st.rerun()
if predict_col.button("Predict"):
    image = canvas.image_data
    st.metric("Prediction", "nothing" if image is None else f"{image.shape[1]}x{image.shape[0]}")
