"""Processes the tests and drills start: stopped by their PID however a run ends, and a bounded wait for a condition.

python -c "from tools.processes import wait_for; print(wait_for(lambda: True, 1))"
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any


def stop(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `grace` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(condition: Callable[[], bool], seconds: float, every: float = 0.1) -> bool:
    """Poll `condition` until it holds (True) or `seconds` pass (its last answer)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
