"""gunicorn settings for the ``web`` process (``gunicorn -c config/gunicorn.py ...``).

They live in the package (``magsync/web/gunicorn_config.py``), where ``magsync stack`` finds
them from any directory; a deployment that needs other values sets them below the import.
"""

from magsync.web.gunicorn_config import *  # noqa: F403
