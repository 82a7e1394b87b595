"""Tools: benchmarks, load tests, drills and lint helpers, run by make targets (`python -m tools.<name>`), and the
harnesses they share with the tests (a throwaway PostgreSQL, a running app in Chromium, replicas behind Caddy)."""
