"""Storage: the predictions log in PostgreSQL (config, pool, schema, reads) and the spool that covers its outages.
The app reaches it through db.py; only training/'s retrain reads it directly, through db.Database's reads."""
