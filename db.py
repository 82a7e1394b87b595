"""The app's door to PostgreSQL: `Database` logs predictions and feedback, and reads History and Stats.

    python db.py                    # create/migrate the schema where the environment points, print where that is
    python db.py --prune-days 365   # and delete older predictions (env RETENTION_DAYS; `make prune DAYS=N`)

The work lives in storage/ (database: the writes and the spool's replay; config, pool, schema, reads, spool). This
façade keeps the names the entry points, the tools and outside users have always used; packages import storage/.

Nothing a user submits is lost: when the database cannot be reached, or does not answer within `DB_WRITE_TIMEOUT`,
writes go to a local spool and are replayed in order, exactly once, when it comes back (storage/database.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from config.settings import settings
from storage.config import configured_dsn, describe, embedded_dsn
from storage.database import Database
from storage.pool import DatabaseUnavailable
from storage.schema import NOT_A_DIGIT, SOURCES, UnknownPrediction
from storage.spool import SpoolFull

__all__ = [
    "NOT_A_DIGIT",
    "SOURCES",
    "Database",
    "UnknownPrediction",
    "DatabaseUnavailable",
    "SpoolFull",
    "configured_dsn",
    "describe",
    "embedded_dsn",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or migrate the schema; --prune-days N: retention.")
    parser.add_argument(
        "--prune-days",
        type=float,
        default=settings().retention_days,
        help="delete predictions older than this many days (env RETENTION_DAYS; unset: keep everything)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    database = Database(migrates=True)  # the one place that migrates where the app does not (DB_MIGRATE_IN_APP=0)
    try:
        database.init_db()
        print(f"schema ready at {describe(database.dsn)}; {database.pending()} spooled writes waiting")
        if args.prune_days:
            gone = database.prune(args.prune_days)
            print(f"pruned {gone:,} predictions older than {args.prune_days:g} days (with their images)")
    except (DatabaseUnavailable, ValueError) as exc:
        print(f"db.py: {exc}")
        return 1
    finally:
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
