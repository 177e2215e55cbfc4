"""Benchmarks against baselines measured in the same run (`make bench`; see docs/BENCHMARKS.md)."""
