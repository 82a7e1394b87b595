"""Locust's clients for `make loadtest-api`: each posts drawn digits to POST /api/predict as fast as answers come
back, and labels every tenth answer, as an API caller would.

    locust -f tools/load/locustfile.py --headless -u 8 -r 8 -t 20s --host http://127.0.0.1:8501  # loadtest_api

The drawings are pen-drawn digits (tools/loadtest_api.drawn_pngs), made once per Locust process, as PNG.
"""

from __future__ import annotations

import random

from locust import HttpUser, constant, task

from tools.load.loadtest_api import drawn_pngs

LABEL_EVERY = 10


DRAWINGS = drawn_pngs()  # before the clients start: the same drawings every run


class ApiClient(HttpUser):
    wait_time = constant(0)  # closed loop: the next request as soon as the answer is in

    def on_start(self) -> None:
        self.sent = 0

    @task
    def predict(self) -> None:
        digit, png = random.choice(DRAWINGS)
        with self.client.post(
            "/api/predict", data=png, headers={"Content-Type": "image/png"}, name="/api/predict", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:120]}")
                return
            answer = response.json()
        self.sent += 1
        if self.sent % LABEL_EVERY == 0:
            self.client.post(
                f"/api/predictions/{answer['request_id']}/label",
                json={"label": digit},
                name="/api/predictions/[request_id]/label",
            )
