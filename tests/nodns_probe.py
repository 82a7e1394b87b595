"""Run inside a network namespace whose DNS never answers (test_hostile.py sets it up): start the app, send one
foreign-Origin websocket handshake, and time a health check right after it. Prints one JSON line.

    ip netns exec <ns> python tests/nodns_probe.py <port>
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def silent_dns() -> None:
    """A DNS server on 127.0.0.1:53 that reads every question and answers none (a resolver that hangs)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 53))
    while True:
        server.recvfrom(4096)


def health(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=60) as response:
        assert response.status == 200
    return time.monotonic() - started


def handshake(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(
            (
                f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Origin: http://evil.example\r\n\r\n"
            ).encode()
        )
        return int(conn.recv(1024).split(b" ", 2)[1])


def main() -> int:
    port = int(sys.argv[1])
    threading.Thread(target=silent_dns, daemon=True).start()
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "OPERATOR_PASSWORD": ""}
    command = [sys.executable, "-m", "streamlit", "run", "server.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1"]
    app = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        results = []
        for _ in range(2):
            status = {"status": 0}
            sender = threading.Thread(target=lambda: status.update(status=handshake(port)))
            sender.start()
            time.sleep(0.2)  # the handshake is being checked now
            results.append({"handshake": None, "health_seconds": round(health(url), 3)})
            sender.join(60)
            results[-1]["handshake"] = status["status"]
        print(json.dumps(results))
    finally:
        app.terminate()
        try:
            app.wait(10)
        except subprocess.TimeoutExpired:
            app.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
