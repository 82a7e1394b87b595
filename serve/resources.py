"""What one server process holds once and shares between the page and the HTTP API: the model and the database
handle (with its spool).

    python -c "from serve import resources; print(resources.checkpoint().version)"

The page reaches them through its `st.cache_resource` functions (app.py), the API through server.py; both end
here, so the model is loaded once per process whichever comes first. Each is kept per setting (the model file, the
database settings), so a process whose environment points elsewhere gets its own, as a new cache entry would.

A promoted model reaches a running process without a restart: `make promote` replaces the file atomically, the next
request sees a new file version (its inode, size and mtime), loads it beside the old one and swaps. A prediction
already under way finishes on the model it started with (it holds it), and logs that model's version; the old one
is let go once nothing holds it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from config.paths import file_identity
from config.settings import settings
from inference.network import Checkpoint, load_checkpoint
from storage.database import Database

_lock = threading.Lock()
_checkpoints: dict[str, tuple[tuple[int, int, int], Checkpoint]] = {}  # path -> (its file version, the model)
_databases: dict[tuple[object, ...], Database] = {}


def model_path() -> str:
    return str(settings().model_path)


def file_version(path: str | None = None) -> tuple[int, int, int]:
    """What changes when the model file is replaced (a promotion's atomic rename gives it a new inode): one stat."""
    return file_identity(Path(path or model_path())) or (0, 0, -1)  # missing: load_checkpoint says what is wrong


def checkpoint(path: str | None = None) -> Checkpoint:
    """The model at `path` (MODEL_PATH, or the shipped one), loaded once per file version: a replaced file is
    loaded at the next call and swapped in, the old model dropped; ModelLoadError as load_checkpoint raises it."""
    path = str(Path(path or model_path()).resolve())
    version = file_version(path)
    current = _checkpoints.get(path)
    if current is not None and current[0] == version:
        return current[1]
    with _lock:  # one load at a time; the callers that arrive meanwhile wait for it (about a second)
        current = _checkpoints.get(path)
        if current is None or current[0] != version:
            # One intra-op thread: steadier latency when the other core serves another request (BENCHMARKS.md).
            torch.set_num_threads(settings().torch_threads)
            _checkpoints[path] = (version, load_checkpoint(path, fused=True))
        return _checkpoints[path][1]


def database() -> Database:
    """The process's database handle for the current settings: the page's and the API's writes share its pool
    and its spool."""
    key = settings().database_key()
    with _lock:
        if key not in _databases:
            _databases[key] = Database()
        return _databases[key]
