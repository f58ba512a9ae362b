"""The baseline of scripts/bench_webhook: a Flask app that accepts every webhook at once.

Same route, same gunicorn settings as magsync's web process, but no signature check, no
parsing and no broker: the ceiling magsync's receiver is measured against.
"""

from flask import Flask, jsonify, request


def create_app():
    app = Flask("bare")

    @app.post("/magento/webhook")
    def receive():
        request.get_data()
        return jsonify({"status": "accepted"}), 202

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
