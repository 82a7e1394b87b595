"""The tests, grouped as the packages are; `make check` runs those that need no server, browser or MNIST."""
