"""The server's doors (serve/, access/, server.py): the HTTP API, readiness, who sees what, hostile input."""
