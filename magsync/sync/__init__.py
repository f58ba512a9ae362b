"""One order event through the pipeline, as a worker runs it.

``pipeline`` (fetch the truth, decide under the order's lock, write, record), ``buyers`` (the
buyer's Account and Contact), ``writes`` (which records one write sends) and ``services`` (what
a worker process builds once: writer, store client, ledger).
"""
