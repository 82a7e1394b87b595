"""Load tests: simulated browser users (`make loadtest`) and Locust on the HTTP API (`make loadtest-api`)."""
