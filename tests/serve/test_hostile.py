"""Hostile and odd input: every image through one bounded door (the canvas too), odd modes, phone photos on their
side, oversized drawings refused before they decode, foreign-Origin websocket handshakes, strict parameters."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import struct
import time
import zlib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import utils
from inference import images
from tests.architecture import ROOT
from tools import browser, pg, replicas


def png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def photo_of_a_one(size: tuple[int, int] = (300, 400)) -> Image.Image:
    """Dark ink on light paper: an upright "1" with a short flag."""
    image = Image.new("RGB", size, (235, 235, 228))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.line([(w // 2, h // 6), (w // 2, h * 5 // 6)], fill=(30, 30, 40), width=w // 12)
    draw.line([(w // 2, h // 6), (w // 2 - w // 6, h // 4)], fill=(30, 30, 40), width=w // 14)
    return image


def test_a_phone_photo_stored_on_its_side_reads_upright() -> None:
    upright = photo_of_a_one()
    stored = upright.rotate(90, expand=True)  # as the sensor stored it; Orientation 6: turn 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif.tobytes(), quality=90)
    decoded = utils.load_uploaded_image(buffer.getvalue())
    assert decoded.size == upright.size, "turned upright"
    model = utils.load_model()
    assert utils.classify(model, decoded).digit == 1


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "P", "PA", "CMYK", "LA", "1", "RGBA", "L"])
def test_every_mode_is_normalised_to_one_the_page_and_the_model_handle(mode: str) -> None:
    source = photo_of_a_one((120, 160)).convert("L")
    if mode in ("I;16", "I", "F"):
        source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257).convert(mode)
    elif mode == "PA":
        source = source.convert("RGBA").convert("PA")
    else:
        source = source.convert(mode)
    image = images.normalise(source)
    assert image.mode in ("L", "RGB", "RGBA")
    image.save(io.BytesIO(), format="JPEG" if image.mode != "RGBA" else "PNG")  # what st.image does with it
    utils.preprocess_image(image)


def test_a_16_bit_png_upload_is_read() -> None:
    deep = Image.fromarray(np.asarray(photo_of_a_one().convert("L")).astype(np.uint16) * 257)
    decoded = utils.load_uploaded_image(png(deep))
    assert decoded.mode == "L"
    assert utils.classify(utils.load_model(), decoded).digit == 1


@pytest.mark.parametrize(
    "size, limits, words",
    [
        ((25_000_000, 1), images.UPLOAD, "too long or too thin"),
        ((20_000, 20_000), images.UPLOAD, "too large"),
        ((8192, 8192), images.CANVAS, "too large (8192x8192 pixels)"),
        ((3000, 10), images.CANVAS, "too long or too thin"),
    ],
)
def test_oversized_images_are_refused_from_their_header(
    size: tuple[int, int], limits: images.ImageLimits, words: str
) -> None:
    data = huge_png(size)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        images.decode_image(data, limits)


def huge_png(size: tuple[int, int]) -> bytes:
    """A PNG whose header says `size`, in a few hundred KB at most (one colour compresses to nothing)."""
    width, height = size
    if width * height <= 70_000_000:
        return png(Image.new("1", size, 0), optimize=True)

    # Too big to build in memory: a valid header and a tiny stream; the decoder must refuse it from the header.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_an_oversized_canvas_image_costs_almost_no_memory() -> None:
    """In a process of its own: the peak resident memory of refusing an 8192x8192 canvas image, against decoding
    one the canvas could really send."""
    code = (
        "import resource, io, sys\n"
        "from PIL import Image\n"
        "from inference import images\n"
        "def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "buf = io.BytesIO(); Image.new('RGBA', (8192, 8192)).save(buf, 'PNG'); data = buf.getvalue()\n"
        "before = rss()\n"
        "try:\n    images.load_canvas_image(data)\nexcept ValueError as exc:\n    print(exc, file=sys.stderr)\n"
        "print(rss() - before)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "too large" in result.stderr
    assert float(result.stdout.strip()) < 20, f"refusing it grew the process by {result.stdout.strip()} MB"


def test_a_canvas_message_that_is_not_an_image_gets_a_sentence() -> None:
    for data in (b"not a data URL", b"GIF89a" + b"\x00" * 20, png(Image.new("L", (10, 10)))[:30]):
        with pytest.raises(ValueError, match="The drawing is not a readable image"):
            utils.load_canvas_image(data)
    tiff = io.BytesIO()
    Image.new("L", (280, 280)).save(tiff, format="TIFF")
    with pytest.raises(ValueError, match="not a readable image"):
        utils.load_canvas_image(tiff.getvalue())


def test_pillow_s_own_words_never_reach_the_user() -> None:
    """A PNG whose text chunk decompresses past Pillow's limit: Pillow says "Decompressed data too large for
    PngImagePlugin.MAX_TEXT_CHUNK"; the user reads ours."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("bomb", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 10), zip=True)
    data = png(Image.new("L", (50, 50)), pnginfo=info)
    with pytest.raises(ValueError) as refused:
        utils.load_uploaded_image(data)
    assert "PngImagePlugin" not in str(refused.value) and "not a readable image" in str(refused.value)


def test_the_page_shows_a_small_preview_never_the_original() -> None:
    big = utils.load_uploaded_image(png(Image.new("RGBA", (5000, 5000), (255, 255, 255, 255))))
    assert max(big.size) <= images.WORK_SIDE, "shrunk as it is decoded"
    assert max(utils.preview(big).size) <= images.PREVIEW_SIDE


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("deep.png", None, None),
        ("line.png", huge_png((25_000_000, 1)), "too long or too thin"),
        ("bomb.png", huge_png((20_000, 20_000)), "too large"),
    ],
)
def test_odd_uploads_on_the_page_get_a_sentence_not_an_error_box(
    page: Callable[[], AppTest], name: str, data: bytes | None, words: str | None
) -> None:
    if data is None:  # a 16-bit greyscale photo of a "1": read, shown and answered
        data = png(Image.fromarray(np.asarray(photo_of_a_one().convert("L")).astype(np.uint16) * 257))
    at = page().button_group(key="page").set_value("Upload").run()
    at.file_uploader(key="upload").upload(name, data, "image/png").run()
    assert not at.exception
    if words is None:
        at.button(key="predict-upload").click().run()
        assert not at.exception and any(m.label == "Prediction" and m.value == "1" for m in at.metric)
    else:
        assert words in " ".join(str(e.value) for e in at.error)


def handshake(host: str, port: int, origin: str) -> tuple[int, float]:
    """A websocket upgrade to Streamlit's stream from `origin`: (HTTP status, seconds)."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(
            (
                f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
            ).encode()
        )
        status = int(conn.recv(1024).split(b" ", 2)[1])
    return status, time.monotonic() - started


def health_seconds(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def test_a_foreign_origin_handshake_is_refused_and_never_stalls_the_server(admin_dsn: str, tmp_path: Path) -> None:
    if replicas.caddy_path() is None:
        pytest.skip("caddy is needed (apt-get install caddy)")
    dsn = pg.create_database(admin_dsn, prefix="mnist_origin")
    try:
        with replicas.Cluster(1, {"DATABASE_URL": dsn, "MODEL_PATH": ""}, tmp_path) as proxy:
            app_port = proxy.ports[0]
            for _ in range(3):  # Streamlit's own check, straight at the app: refused, and nothing waits on it
                status, seconds = handshake("127.0.0.1", app_port, "http://evil.example")
                assert status == 403 and seconds < 1.0
                assert health_seconds(f"http://127.0.0.1:{app_port}") < 1.0
            proxy_port = proxy.proxy_port
            status, _ = handshake("127.0.0.1", proxy_port, "https://evil.example")
            assert status == 403, "Caddy refuses it before Streamlit sees it"
            status, _ = handshake("127.0.0.1", proxy_port, f"http://127.0.0.1:{proxy_port}")
            assert status == 101, "the page's own origin still connects"
            with urllib.request.urlopen(f"{proxy.url}/_stcore/health", timeout=10) as response:
                assert response.status == 200
            try:
                urllib.request.urlopen(f"{proxy.url}/_stcore/metrics", timeout=10)
                raise AssertionError("Streamlit's metrics are public")
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
    finally:
        pg.drop_database(admin_dsn, dsn)


@pytest.fixture
def namespace_without_dns() -> Iterator[str]:
    """A network namespace with loopback only, whose resolver (127.0.0.1:53, served by the probe) never answers."""
    name = f"mnist-nodns-{os.getpid()}"
    if shutil.which("ip") is None or subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode:
        pytest.skip("network namespaces are not available here (iproute2, root)")
    resolv = Path("/etc/netns") / name
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        resolv.mkdir(parents=True, exist_ok=True)
        (resolv / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(resolv, ignore_errors=True)


def test_a_foreign_origin_handshake_without_dns_never_freezes_the_server(namespace_without_dns: str) -> None:
    """As the prober did: the app where DNS never answers, a foreign-Origin handshake, then a health check."""
    probe = [sys.executable, str(ROOT / "tests" / "nodns_probe.py"), str(browser.free_port())]
    result = subprocess.run(
        ["ip", "netns", "exec", namespace_without_dns, *probe], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for attempt in json.loads(result.stdout.strip().splitlines()[-1]):
        assert attempt["handshake"] == 403
        assert attempt["health_seconds"] < 1.0, attempt


def test_streamlit_never_looks_up_the_external_ip() -> None:
    """The handshake's origin check would ask checkip.amazonaws.com (blocking, on the event loop); server.py
    answers it in advance."""
    code = (
        "import streamlit.net_util as n\n"
        "n._make_blocking_http_get = lambda *a, **k: (_ for _ in ()).throw(SystemExit('looked it up'))\n"
        "import server\n"
        "print(n.get_external_ip())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OPERATOR_PASSWORD": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "127.0.0.1", result.stdout + result.stderr


def test_export_parameters_are_strict_and_errors_say_nothing_of_the_internals(admin_dsn: str, tmp_path: Path) -> None:
    dsn = pg.create_database(admin_dsn, prefix="mnist_params")
    password = "a long operator password"
    env = {"DATABASE_URL": dsn, "MODEL_PATH": "", "OPERATOR_PASSWORD": password, "SPOOL_PATH": str(tmp_path / "s")}
    try:
        with browser.running_app(env) as url:
            opener = urllib.request.build_opener()
            auth = "Basic " + base64.b64encode(f"operator:{password}".encode()).decode()
            for query in ("digit=%D9%A3", "digit=%EF%BC%97", "digit=07", "digit=" + "9" * 5000, "correct=maybe"):
                request = urllib.request.Request(
                    f"{url}/export/predictions.csv?{query}", headers={"Authorization": auth}
                )
                try:
                    opener.open(request, timeout=10)
                    raise AssertionError(f"{query} was accepted")
                except urllib.error.HTTPError as exc:
                    body = exc.read().decode()
                    assert exc.code == 400 and exc.headers["X-Content-Type-Options"] == "nosniff"
                    message = json.loads(body)["error"]
                    assert (
                        len(body) < 200 and "int()" not in message and "literal" not in message and "9999" not in body
                    )
    finally:
        pg.drop_database(admin_dsn, dsn)
