"""Benchmarks: scripts that measure the service and write the figures in docs/ (see README.md here).

Run each from the repository root as `python -m benchmarks.<name>`. Nothing in service/,
indexer/ or models/ imports this package (tests/test_layout.py checks it).
"""
