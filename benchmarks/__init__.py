"""Benchmarks, run by hand from the project root: `python -m benchmarks.bench_NAME`; each prints its figures."""
