"""Running it: Compose, the Dockerfile, deploy and backup scripts, monitoring, replicas behind Caddy."""
