"""Benchmarks behind BENCHMARKS.md: `make bench`, `make bench-history`, `make bench-burst`."""
