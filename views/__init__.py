"""Views: the History and Stats pages that app.py mounts beside Draw and Upload (layout; no queries of their own)."""
