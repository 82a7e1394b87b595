"""Access: who sees what. The anonymous visitor id a browser keeps, the operator's password and its throttle, the
per-client limits on Predict, Upload and the export, and the client's address behind the proxy."""
