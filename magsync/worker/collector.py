"""Python's cyclic garbage collector, tuned for a worker (``MAGSYNC_GC_THRESHOLD``).

A coalescing worker runs hundreds of tasks at once, each holding its message, its order and its
records while it waits for the store and for its batch. With Python's default threshold the
collector runs after every 700 new container objects: thousands of times a second in a burst,
each time scanning the young task state, promoting what is still alive, and from time to time
scanning everything the process holds (Celery, kombu, SQLAlchemy, simple-salesforce and the rest
of what the worker imported). Measured in a burst, that was a fifth of the worker's CPU.

At start-up, before the pool forks its processes, ``tune`` freezes what the worker has imported
(``gc.freeze``: never scanned again, and not copied into the children's pages by scans either)
and raises the first generation's threshold, so the collector runs some seventy times less
often. Reference cycles are still collected, in larger runs; ``MAGSYNC_GC_THRESHOLD=0`` leaves
the collector as Python sets it.
"""

import gc
import logging

log = logging.getLogger(__name__)


def tune(threshold):
    """Freeze the objects alive now and run a young collection every ``threshold`` allocations
    (the older generations' multipliers unchanged); nothing when ``threshold`` is 0. Returns
    the number of objects frozen, or None when left as it is."""
    if threshold <= 0:
        return None
    gc.collect()  # what is already garbage is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
    return gc.get_freeze_count()


def on_worker_init(sender=None, **_):
    """Celery's ``worker_init`` (the worker's main process, before the pool starts): tune the
    collector with the worker app's ``MAGSYNC_GC_THRESHOLD``."""
    settings = getattr(getattr(sender, "app", None), "magsync_settings", None)
    if settings is None:
        return
    frozen = tune(settings.gc_threshold)
    if frozen is not None:
        log.info(
            "garbage collector tuned",
            extra={"threshold": settings.gc_threshold, "frozen": frozen},
        )
