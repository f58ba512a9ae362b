"""The web process: the Flask app factory, the webhook view and the health endpoints.

``gunicorn "magsync.web:create_app()"``. It imports only what receiving needs: no ledger, no
Salesforce client, no worker.
"""

from magsync.web.app import create_app

__all__ = ["create_app"]
