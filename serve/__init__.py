"""The server layer: what one process shares between the page and the HTTP API, the API itself, and its metrics."""
