"""The loop closing itself, end to end, in a throwaway database, model folder and MLflow store.

    make loop-drill                       # the three parts below, with a running app watching the model file
    python -m tools.loop_drill --dry-run  # the same with a dry-run retrain (the gate refuses it): the smoke test

A running app (`streamlit run server.py` on loopback, MODEL_PATH in the throwaway folder) answers POST /api/predict
throughout, and `make loop` (= python train.py --retrain-if-needed, AUTO_PROMOTE=1) is run after each part:
1. 40 labelled canvas-drawn MNIST test digits from 4 visitors: "not needed", too few labels.
2. 300 labelled crossed twos (the shipped model reads them as 7) from 30 visitors: a candidate is trained, gated and
   promoted; the app answers with the new version without a restart (how many seconds after the file changed), and
   reads fresh crossed twos right.
3. 300 canvas-drawn test sevens labelled "1" by one visitor: production is unchanged, and the check says why (held
   for review, over one labeller's cap).
It prints each check's decision and reasons, the wall time of each check, and exits 1 when a part did not go so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import db
from config.settings import settings
import utils
from tools import browser, pg
from tools.feedback_drill import log_labelled
from training.dataset import load_mnist
from training.synthetic import drawn

ROOT = Path(__file__).resolve().parent.parent
STYLE = "crossed-two"
SWAP_BAR_SECONDS = 60.0
FRESH = 100  # new drawings of the style, never fed back, that judge the promoted model


@dataclass
class Place:
    """The drill's throwaway world: its folder, database and the environment every process gets."""

    folder: Path
    dsn: str
    model: Path = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.folder / "models" / "model.pth"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.dsn,
            "MODEL_PATH": str(self.model),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.folder / 'mlflow.db'}",
            "AUTO_PROMOTE": "1",
            "SPOOL_PATH": str(self.folder / "spool.jsonl"),
        }

    def loop_command(self, dry_run: bool) -> list[str]:
        return [
            sys.executable, "train.py", "--retrain-if-needed", "--base", str(self.model),
            "--out", str(self.folder / "models" / "candidate.pth"), "--snapshot-dir", str(self.folder / "feedback"),
        ] + (["--dry-run"] if dry_run else [])  # fmt: skip


def run_check(place: Place, dry_run: bool) -> tuple[dict[str, Any], float]:
    """One `make loop` against the drill's world: (its record, its wall time in seconds)."""
    started = time.monotonic()
    result = subprocess.run(
        place.loop_command(dry_run), cwd=ROOT, env={**os.environ, **place.env()}, capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    checks = (place.folder / "loop" / "checks.jsonl").read_text().splitlines()
    entry = json.loads(checks[-1])
    print(f"  make loop exited {result.returncode} after {seconds:.1f} s: {entry['decision']}")
    for reason in entry["reasons"]:
        print(f"    - {reason}")
    if entry["decision"] not in ("not needed", "promoted"):
        print(result.stdout[-3000:] + result.stderr[-2000:])
    else:  # the retrain's and the gate's own figures
        shown = ("wall time", "feedback hold-out", "official test", "candidate v", "production   ", "promoted version")
        for line in result.stdout.splitlines():
            if line.startswith(shown):
                print(f"    | {line}")
    return entry, seconds


class Watcher(threading.Thread):
    """Asks the running app for a prediction every `every` seconds, noting when its model version changes."""

    def __init__(self, url: str, png: bytes, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.png, self.every = url, png, every
        self.versions: list[tuple[float, str]] = []  # (wall clock, version) at each change
        self.errors = 0
        self.done = threading.Event()

    def ask(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/predict", data=self.png, headers={"Content-Type": "image/png"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))

    def run(self) -> None:
        while not self.done.is_set():
            try:
                version = str(self.ask()["model_version"])
                if not self.versions or self.versions[-1][1] != version:
                    self.versions.append((time.time(), version))
            except OSError:
                self.errors += 1
            self.done.wait(self.every)


def png_of(drawing: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(drawing).save(out, format="PNG")
    return out.getvalue()


def feed_digits(place: Place, images: Any, labels: Any, label_as: int | None, by: list[str], seed: int) -> int:
    """Log canvas-drawn MNIST `images` with their label (or `label_as`), labeller `by[n % len(by)]`; returns how
    many the current production model read right."""
    production = utils.load_checkpoint(place.model)
    rng = np.random.default_rng(seed)
    database = db.Database(place.dsn, spool_path=place.folder / "drill-spool.jsonl")
    try:
        right = 0
        for n, (image, label) in enumerate(zip(images, labels)):
            drawing = drawn.canvas_drawing(image.squeeze(0).numpy(), rng)
            answer = int(label) if label_as is None else label_as
            right += log_labelled(database, production, drawing, answer, by[n % len(by)])
        return right
    finally:
        database.close()


def feed_style(place: Place, count: int, labellers: int, seed: int) -> int:
    production = utils.load_checkpoint(place.model)
    rng = np.random.default_rng(seed)
    database = db.Database(place.dsn, spool_path=place.folder / "drill-spool.jsonl")
    try:
        digit = drawn.STYLES[STYLE][0]
        drawings = (drawn.draw_style(STYLE, rng) for _ in range(count))
        return sum(
            log_labelled(database, production, drawing, digit, f"drill-visitor-{n % labellers}")
            for n, drawing in enumerate(drawings)
        )
    finally:
        database.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def part_one(place: Place, test: Any) -> bool:
    print("\n1. 40 labelled digits from 4 visitors")
    right = feed_digits(place, test.images[:40], test.labels[:40], None, [f"drill-digits-{n}" for n in range(4)], 1)
    print(f"  fed 40 (production read {right} right)")
    entry, seconds = run_check(place, dry_run=False)
    again, later = run_check(place, dry_run=False)  # the next night's check, the model unchanged
    print(f"  a check with nothing to do: {seconds:.1f} s, and {later:.1f} s the next time")
    return entry["decision"] == again["decision"] == "not needed"


def part_two(place: Place, url: str, dry_run: bool) -> bool:
    print(f"\n2. 300 labelled {STYLE} drawings from 30 visitors, AUTO_PROMOTE=1")
    right = feed_style(place, 300, 30, seed=11)
    print(f"  fed 300 (production read {right} right)")
    before_version, before = utils.load_checkpoint(place.model).version, digest(place.model)
    watcher = Watcher(url, png_of(drawn.draw_style(STYLE, np.random.default_rng(5))))
    watcher.start()
    entry, seconds = run_check(place, dry_run)
    print(f"  the check, retrain, gate and promotion: {seconds / 60:.1f} min")
    if entry["decision"] != "promoted":
        watcher.done.set()
        print(f"  production unchanged: {digest(place.model) == before}")
        return dry_run and entry["decision"] == "candidate refused by the gate" and digest(place.model) == before
    changed_at = place.model.stat().st_mtime
    deadline = time.time() + SWAP_BAR_SECONDS + 5
    while time.time() < deadline and not any(v != before_version for _, v in watcher.versions):
        time.sleep(0.5)
    watcher.done.set()
    seen = [t for t, v in watcher.versions if v != before_version]
    after = utils.load_checkpoint(place.model)
    if not seen:
        print(f"  the app still answered with {before_version} {SWAP_BAR_SECONDS:.0f} s after the file changed")
        return False
    swap = seen[0] - changed_at
    print(f"  the app answered with {after.version} {swap:.2f} s after models/model.pth changed (asked every "
          f"{watcher.every:g} s; no restart; {watcher.errors} failed requests)")  # fmt: skip
    read = app_reads_style(url, FRESH, seed=97)
    new_in_process = drawn.style_accuracy(after.model, STYLE, FRESH, 97)
    print(f"  {FRESH} fresh {STYLE} drawings through the running app: {read:.0%} read as 2 "
          f"(in process: new model {new_in_process:.0%})")  # fmt: skip
    return swap <= SWAP_BAR_SECONDS and read >= 0.9 and watcher.errors == 0


def app_reads_style(url: str, count: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    asker = Watcher(url, b"")
    right = 0
    for _ in range(count):
        asker.png = png_of(drawn.draw_style(STYLE, rng))
        answer = asker.ask()
        right += bool(answer["is_digit"]) and answer["digit"] == drawn.STYLES[STYLE][0]
    return right / count


def part_three(place: Place, url: str, test: Any) -> bool:
    print('\n3. 300 canvas-drawn sevens labelled "1" by one visitor')
    sevens = (test.labels == 7).nonzero().squeeze(1)[:300]
    right = feed_digits(place, test.images[sevens], test.labels[sevens], 1, ["drill-poisoner"], 3)
    print(f"  fed 300 poisoned labels ({300 - right} of the sevens read as anything but 1 by production)")
    before = digest(place.model)
    entry, _ = run_check(place, dry_run=False)
    seven = drawn.canvas_drawing(test.images[int(sevens[0])].squeeze(0).numpy(), np.random.default_rng(0))
    answered = Watcher(url, png_of(seven)).ask()
    unchanged = (
        digest(place.model) == before and answered["model_version"] == utils.load_checkpoint(place.model).version
    )
    print(f"  production unchanged: {unchanged} (the app reads a seven as {answered['digit']})")
    return unchanged and entry["decision"] == "not needed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="part 2 retrains with --dry-run: the gate refuses it")
    args = parser.parse_args(argv)
    production = settings().model_path
    mnist_dir = settings().mnist_dir
    _, test, _ = load_mnist(str(mnist_dir) if mnist_dir else None)
    with tempfile.TemporaryDirectory() as tmp:
        admin = pg.admin_dsn(Path(tmp))
        place = Place(Path(tmp), pg.create_database(admin, prefix="mnist_loop_drill"))
        place.model.parent.mkdir()
        shutil.copyfile(production, place.model)
        if production.with_name("production.json").exists():  # the promotion's record, as it lies beside the model
            shutil.copyfile(production.with_name("production.json"), place.model.with_name("production.json"))
        try:
            with browser.running_app({**place.env(), "API_LIMIT_PER_MINUTE": "0"}) as url:
                results = [part_one(place, test)]
                # A dry run's candidate is refused, so the poisoned labels come first there: after it they would
                # count as new beside part 2's (in the real drill the promotion made part 2's labels old).
                if args.dry_run:
                    results += [part_three(place, url, test), part_two(place, url, dry_run=True)]
                else:
                    results += [part_two(place, url, dry_run=False), part_three(place, url, test)]
        finally:
            pg.drop_database(admin, place.dsn)
    print(f"\nloop drill: {'every part went as it should' if all(results) else 'FAILED'} {results}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
