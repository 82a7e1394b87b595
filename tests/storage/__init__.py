"""PostgreSQL through storage/: writes, the spool, History and Stats reads, migrations."""
