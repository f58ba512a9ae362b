"""RabbitMQ between the web process and the workers.

``app`` (the Celery configuration both processes share, without tasks), ``broker`` (the queues
and exchanges of a namespace, and publishing that waits for the broker's confirm) and
``dead_letters`` (orders set aside with their reason: put, browse, replay, purge).
"""
