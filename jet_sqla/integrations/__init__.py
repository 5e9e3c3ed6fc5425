"""Optional integrations with what users' apps are built on: Flask, Starlette/FastAPI, async engines.

Each module imports its framework at the top, and is itself imported only when
a bridge is used with that framework; the core of jet_sqla never imports one.
"""
