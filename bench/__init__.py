"""Benchmarks of the real service: ``python -m bench latency`` (see bench/latency.py)."""
