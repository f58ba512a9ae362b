"""The worker process: its Celery app, the ``magsync.sync_order`` task and the circuit breaker."""
