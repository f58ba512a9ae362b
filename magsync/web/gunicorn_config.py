"""gunicorn settings for the ``web`` process.

The Procfile reads them through ``config/gunicorn.py``; ``magsync stack`` through the package
(``gunicorn -c python:magsync.web.gunicorn_config ...``), so it needs no checkout.

Heroku-style hosts give the port in ``PORT`` and a worker count in ``WEB_CONCURRENCY``. Each
request waits for the broker's publisher confirm, which the requests of one process waiting at
the same time share (group commit), so threads (not more processes) absorb that latency; the
receiver's own timeouts stay far below gunicorn's. The publisher's thread starts with the first
request of each worker (``preload_app`` stays off: nothing is shared across the fork).
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Magento retries on 5xx; a restart should finish in-flight requests, not drop them.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = 100
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket is one path per user by default, shared by every instance on the
# machine; magsync does not use it.
control_socket_disable = True
