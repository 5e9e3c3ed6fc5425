"""A FastAPI + SQLModel app with jet_sqla mounted on it: see app.py."""
