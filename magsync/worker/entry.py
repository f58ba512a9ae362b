"""What ``celery --app magsync.worker.entry`` imports (``magsync worker`` and ``magsync flower``).

The one module that builds an app at import time, because the ``celery`` command needs a module
attribute; nothing else imports it.
"""

from magsync import alerts, logs
from magsync.settings import Settings
from magsync.worker.app import create_worker_app

_settings = Settings.from_env()
logs.configure(_settings.log_level)
alerts.init(_settings)
app = create_worker_app(_settings)
