"""A Flask-SQLAlchemy app with jet_sqla mounted on it: see app.py."""
