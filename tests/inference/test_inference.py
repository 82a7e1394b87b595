"""Preprocessing and inference: MNIST normalisation, canvas-like drawings, photos, odd input, the public API."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from inference.canvas import CANVAS_SIZE
from training.synthetic import drawn
import utils


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(image.shape)
    mass = image.sum()
    return float((ys * image).sum() / mass), float((xs * image).sum() / mass)


def best_shifted_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = 1) -> float:
    """Correlation of a with b, allowing an integer shift of up to `max_shift` px (MNIST's own rounding)."""
    best = -1.0
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            best = max(best, float(np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]))
    return best


def on_canvas(digit: np.ndarray, scale: int, top: int, left: int) -> np.ndarray:
    size = 28 * scale
    big = Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    canvas[top : top + size, left : left + size] = np.asarray(big)
    return canvas


# ----------------------------------------------------------------------------------------------------------------
# The reference: an MNIST digit put back on a big canvas comes out as the original digit


def test_mnist_digit_on_a_big_canvas_comes_back_as_itself(mnist_test_split) -> None:
    rng = np.random.default_rng(0)
    digits = mnist_test_split.images[:300].squeeze(1).numpy()
    correlations = []
    for digit in digits:
        scale = int(rng.integers(3, 10))
        top, left = (int(v) for v in rng.integers(0, CANVAS_SIZE - 28 * scale + 1, size=2))
        out = utils.preprocess_image(on_canvas(digit, scale, top, left))
        assert out.shape == (28, 28) and out.dtype == np.float32
        cy, cx = centre_of_mass(out)
        assert 13.4 <= cy <= 14.6 and 13.4 <= cx <= 14.6, "centre of mass must land where MNIST puts it"
        rows, cols = np.flatnonzero(out.max(1) > 0.05), np.flatnonzero(out.max(0) > 0.05)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21), "ink must fill the 20x20 box"
        correlations.append(best_shifted_correlation(out, digit))
    assert np.median(correlations) > 0.97
    assert np.percentile(correlations, 5) > 0.9
    assert min(correlations) > 0.8


def test_position_and_size_on_the_canvas_do_not_matter(mnist_test_split) -> None:
    digit = mnist_test_split.images[0].squeeze(1).numpy()[0]
    corner_small = utils.preprocess_image(on_canvas(digit, 3, 0, 0))
    centre_large = utils.preprocess_image(on_canvas(digit, 9, 14, 14))
    assert best_shifted_correlation(corner_small, centre_large) > 0.95


# ----------------------------------------------------------------------------------------------------------------
# The shipped model on canvas-like drawings


def test_shipped_model_reads_canvas_like_drawings(mnist_test_split, checkpoint: utils.Checkpoint) -> None:
    accuracy = drawn.drawn_digit_accuracy(checkpoint.model, mnist_test_split.images, mnist_test_split.labels)
    print(f"canvas-like accuracy: {accuracy:.4f} of {drawn.DRAWN_CHECK_SIZE}")
    assert accuracy >= 0.99


def test_photo_of_dark_ink_on_light_paper_is_inverted_by_its_background(
    mnist_test_split, checkpoint: utils.Checkpoint
) -> None:
    """A greyish, noisy 'photo' (dark ink, uneven light paper, JPEG) reads like the canvas drawing."""
    rng = np.random.default_rng(7)
    correct = 0
    for i in range(200):
        digit = mnist_test_split.images[i].squeeze(0).numpy()
        ink = drawn.canvas_drawing(digit, rng)[..., 0].astype(np.float32) / 255
        paper = 200 + 30 * np.linspace(0, 1, CANVAS_SIZE)[None, :] + rng.normal(0, 6, (CANVAS_SIZE, CANVAS_SIZE))
        photo = np.clip(paper * (1 - 0.75 * ink), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(np.stack([photo] * 3, axis=-1)).save(buffer, format="JPEG", quality=80)
        image = utils.load_uploaded_image(buffer.getvalue())
        correct += utils.classify(checkpoint.model, image).digit == int(mnist_test_split.labels[i])
    assert correct / 200 >= 0.97


# ----------------------------------------------------------------------------------------------------------------
# Public API


def test_public_api_shapes_and_probabilities(checkpoint: utils.Checkpoint) -> None:
    image = np.zeros((280, 280, 4), dtype=np.uint8)
    image[..., 3] = 255
    image[40:240, 130:150, :3] = 255  # a "1"
    arr = utils.preprocess_image(image)
    tensor = utils.convert_to_tensor(arr)
    assert tensor.shape == (1, 1, 28, 28) and tensor.dtype == torch.float32
    model = utils.load_model()
    with torch.inference_mode():
        scores = utils.get_confidence_scores(model(tensor))
    digit = int(np.argmax(scores))
    assert digit == 1 and 0.5 < scores[digit] <= 1.0
    assert len(scores) == 10 and abs(sum(scores) - 1) < 1e-6
    assert utils.classify(model, image).confidence == pytest.approx(scores[digit])
    with pytest.raises(ValueError, match="28"):
        utils.convert_to_tensor(np.zeros((27, 28)))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((280, 280, 4), dtype=np.uint8),  # transparent, nothing drawn
        np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),  # black, nothing drawn
        np.full((280, 280, 3), 255, dtype=np.uint8),  # blank white paper
        np.full((50, 50), 0.5),
    ],
    ids=["transparent", "black-canvas", "white-paper", "flat-grey"],
)
def test_nothing_drawn_raises_empty_drawing(image: np.ndarray) -> None:
    with pytest.raises(utils.EmptyDrawingError, match="Draw a digit first"):
        utils.preprocess_image(image)


def test_a_dot_is_too_little_ink_to_be_a_digit() -> None:
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[100:108, 100:108] = 255
    with pytest.raises(utils.EmptyDrawingError, match="Too little ink"):
        utils.preprocess_image(canvas)


@pytest.mark.parametrize(
    "probability, shown",
    [
        (0.5, "50.0%"),
        (0.9731, "97.3%"),
        (0.9949, "99.5%"),
        (0.99974, "99.97%"),
        (0.999996, ">99.99%"),
        (1.0, "100.00%"),
    ],
)
def test_confidence_is_never_rounded_up_to_certainty(probability: float, shown: str) -> None:
    assert utils.format_confidence(probability) == shown


def test_empty_drawing_error_is_a_value_error() -> None:
    assert issubclass(utils.EmptyDrawingError, ValueError)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((10, 10, 7)), "shape"),
        (np.zeros((2, 2, 2, 2)), "shape"),
        (np.array([[1 + 2j]]), "dtype"),
        (np.array([["a"]]), "dtype"),
        (np.full((5, 5), np.nan), "NaN"),
        (np.zeros((9000, 1), dtype=np.uint8), "too large"),
        ("not an image", "Expected an image"),
    ],
)
def test_bad_input_raises_value_error_with_a_message(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        utils.preprocess_image(bad)  # type: ignore[arg-type]


def valid_or_clear_error(image: np.ndarray | Image.Image) -> None:
    try:
        out = utils.preprocess_image(image)
    except ValueError as exc:  # EmptyDrawingError included
        assert str(exc), "errors must explain themselves"
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]),
        shape=st.one_of(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
            st.tuples(st.integers(0, 40), st.integers(0, 40), st.sampled_from([1, 2, 3, 4, 5])),
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6),
        ),
    )
)
def test_preprocess_any_array_returns_28x28_or_a_clear_error(image: np.ndarray) -> None:
    valid_or_clear_error(image)


@settings(max_examples=500, deadline=None)
@given(
    mode=st.sampled_from(["1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "CMYK", "I;16"]),
    size=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    colour=st.integers(0, 255),
    ink=st.one_of(st.none(), st.tuples(st.integers(0, 299), st.integers(0, 299), st.integers(1, 200))),
)
def test_preprocess_any_pil_image_returns_28x28_or_a_clear_error(
    mode: str, size: tuple[int, int], colour: int, ink: tuple[int, int, int] | None
) -> None:
    image = Image.new("L", size, colour)
    if ink is not None:
        x, y, r = ink
        image.paste(255 - colour, (x, y, x + r, y + r // 3 + 1))
    valid_or_clear_error(image.convert(mode))


# ----------------------------------------------------------------------------------------------------------------
# Uploads


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_uploads_in_every_supported_format_decode(fmt: str) -> None:
    image = Image.new("RGB", (120, 90), "white")
    image.paste((0, 0, 0), (50, 10, 65, 80))
    decoded = utils.load_uploaded_image(encode(image, fmt))
    assert decoded.size == (120, 90)
    assert utils.preprocess_image(decoded).max() > 0.5


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("L", (60, 60), v) for v in (0, 255)]
    frames[0].paste(255, (25, 5, 35, 55))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    first = utils.load_uploaded_image(buffer.getvalue())
    assert np.asarray(first.convert("L"))[30, 30] == 255 and np.asarray(first.convert("L"))[30, 5] == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, not an image", "not a readable image"),
        (encode(Image.new("RGB", (64, 64), "white"), "PNG")[:40], "not a readable image"),
        (encode(Image.new("RGB", (8, 8)), "TIFF"), "not a readable image"),
        (b"\x00" * (utils.MAX_UPLOAD_BYTES + 1), "too large"),
        (encode(Image.new("1", (6000, 6000)), "PNG"), "too large"),  # small file, 36 Mpx: a decompression bomb
    ],
    ids=["zero-bytes", "text", "truncated", "tiff", "too-many-bytes", "bomb"],
)
def test_bad_uploads_raise_a_clear_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        utils.load_uploaded_image(data)


def upload_decodes_or_clear_error(data: bytes) -> None:
    """The upload decodes (and then preprocesses or explains itself), or raises a ValueError with a message."""
    try:
        image = utils.load_uploaded_image(data)
    except ValueError as exc:
        assert str(exc)
        return
    valid_or_clear_error(image)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_anything_but_value_error(data: bytes) -> None:
    upload_decodes_or_clear_error(data)


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]),
    pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 64), st.integers(1, 64), st.just(3))),
    cut=st.floats(0.0, 1.0),
)
def test_valid_and_truncated_uploads_decode_or_raise_value_error(fmt: str, pixels: np.ndarray, cut: float) -> None:
    data = encode(Image.fromarray(pixels), fmt)
    data = data[: int(len(data) * cut)] if cut < 1.0 else data
    upload_decodes_or_clear_error(data)
