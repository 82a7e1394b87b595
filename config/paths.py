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
