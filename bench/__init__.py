"""Benchmarks: run each as `python -m bench.NAME` from the repo root; each prints a table."""
