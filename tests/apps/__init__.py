"""Apps that tests serve from a real server process, and the helpers that run them (see :mod:`.server`)."""

from .server import REPO, Gunicorn, MessageClient, Reply, gunicorn, rss_kib

__all__ = ['REPO', 'Gunicorn', 'MessageClient', 'Reply', 'gunicorn', 'rss_kib']
