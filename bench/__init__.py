"""Benchmark suite for jet_sqla (kept importable by Python 3.9: the reference launcher uses it)."""
