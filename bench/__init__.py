"""jet_sqla's benchmarks: ``python -m bench`` (see BENCHMARKS.md).

The package's ``__init__`` and ``payloads`` stay importable by Python 3.9:
the reference bridge's launcher runs in jet-bridge's Python 3.9 virtualenv.
"""
