"""A reference point of scripts/bench_webhook: magsync's web app with the broker taken away.

Every request is received as in magsync (body limit, signature, envelope, the task message
built), but the message goes nowhere and no confirm is awaited, so its rate is the ceiling the
receiver's own work leaves: what remains between it and magsync's rate is the cost of publishing
to RabbitMQ and waiting for its confirm. Never a way to run magsync: it accepts webhooks it
does not keep.
"""

from magsync.messaging.task_message import sync_order_message
from magsync.web import create_app as create_magsync_app


class BuildOnly:
    """A publisher that builds each task message, as the real one does, and keeps nothing."""

    def publish(self, event, task_id):
        sync_order_message(event, task_id)
        return task_id

    def declare_now(self):
        return None


def create_app():
    return create_magsync_app(publisher=BuildOnly())
