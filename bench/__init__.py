"""Benchmarks: each script prints one JSON line per run, with a reference tool measured in the same run."""
