"""The worker process: its Celery app, the ``magsync.sync_order`` task, its retry decision and
the circuit breaker; the ``magsync.reconcile`` task and the schedule the clock sends it on."""
