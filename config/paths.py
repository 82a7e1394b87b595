"""Where the project's files are: one definition, imported by every layer.

python -c "from config.paths import DEFAULT_MODEL_PATH; print(DEFAULT_MODEL_PATH)"
"""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"  # MNIST, runs, the spool and the embedded PostgreSQL (not in git)
MODELS_DIR = PROJECT_DIR / "models"
DEFAULT_MODEL_PATH = MODELS_DIR / "model.pth"  # the production model the app serves
ENV_FILE = PROJECT_DIR / ".env"


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced (a promotion's atomic rename gives it a new inode): (inode, mtime in ns,
    size), from one stat; None when it is not there. The app swaps models by it, and the loop remembers by it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
