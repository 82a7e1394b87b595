"""What one server process holds once and shares between the page and the HTTP API: the model and the database
handle (with its spool).

    python -c "from serve import resources; print(resources.checkpoint().version)"

The page reaches them through its `st.cache_resource` functions (app.py), the API through server.py; both end
here, so the model is loaded once per process whichever comes first. Each is kept per setting (the model file, the
database settings), so a process whose environment points elsewhere gets its own, as a new cache entry would.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from config.settings import settings
from inference.network import Checkpoint, load_checkpoint
from storage.database import Database

_lock = threading.Lock()
_checkpoints: dict[tuple[str, float, int], Checkpoint] = {}
_databases: dict[tuple[object, ...], Database] = {}


def model_path() -> str:
    return str(settings().model_path)


def checkpoint(path: str | None = None) -> Checkpoint:
    """The model at `path` (MODEL_PATH, or the shipped one), loaded once per file version; ModelLoadError as
    load_checkpoint raises it."""
    path = path or model_path()
    try:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime, stat.st_size)
    except OSError:
        key = (path, 0.0, -1)  # load_checkpoint says what is wrong with it
    with _lock:
        if key not in _checkpoints:
            # One intra-op thread: steadier latency when the other core serves another request (BENCHMARKS.md).
            torch.set_num_threads(settings().torch_threads)
            _checkpoints[key] = load_checkpoint(path, fused=True)
        return _checkpoints[key]


def database() -> Database:
    """The process's database handle for the current settings: the page's and the API's writes share its pool
    and its spool."""
    key = settings().database_key()
    with _lock:
        if key not in _databases:
            _databases[key] = Database()
        return _databases[key]
