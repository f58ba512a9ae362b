"""Entry point of ``celery -A magsync.worker worker`` (and Flower)."""

from magsync.app import create_app

app = create_app(receiver=False).extensions["celery"]
