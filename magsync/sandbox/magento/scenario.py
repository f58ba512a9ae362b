"""Scenarios: many orders taken through lifecycle steps, paced, optionally in the background.

A scenario places ``orders`` orders and applies ``steps`` (lifecycle actions, e.g.
``["invoice", "ship"]``) to each. ``lag`` interleaves orders: step *k* of order *i* runs when
order *i + k·lag* is placed (0 runs an order's steps right after it is placed, so its saves
share a second and exercise the per-order ``updated_at`` clock). ``duration`` spreads all
saves evenly over that many seconds (None: as fast as the store goes); ``burst`` issues saves
in groups of that size at the same average rate. After an ``edit`` step the following steps
apply to the new order. ``wait`` blocks until every webhook of the scenario is delivered.
"""

import itertools
import threading
import time
import uuid

from magsync.sandbox.magento.orders import ACTIONS


def normalise_steps(steps):
    """Steps as a list of action names (a leading ``"place"`` is implied and dropped)."""
    steps = [steps] if isinstance(steps, str) else list(steps or ())
    if steps and steps[0] == "place":
        steps = steps[1:]
    unknown = [step for step in steps if step not in ACTIONS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; expected some of {', '.join(ACTIONS)}")
    return steps


def plan(orders, steps, lag):
    """The order of operations: ``(order_index, step)`` with step None for placing."""
    operations = [
        (index + position * lag, position, index, step)
        for index in range(orders)
        for position, step in enumerate([None, *steps])
    ]
    operations.sort()
    return [(index, step) for _, _, index, step in operations]


class ScenarioRun:
    """One scenario: its parameters, progress and result (or error)."""

    _ids = itertools.count(1)

    def __init__(self, params):
        self.id = f"scenario-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        self.params = params
        self.done_ops = 0
        self.total_ops = 0
        self.result = None
        self.error = None
        self.finished = threading.Event()
        self.thread = None

    def describe(self):
        return {
            "id": self.id,
            "params": self.params,
            "progress": {"done": self.done_ops, "total": self.total_ops},
            "finished": self.finished.is_set(),
            "result": self.result,
            "error": self.error,
        }


def run(store, scenario, orders=1000, steps=("invoice", "ship"), duration=None, lag=0,
        kind=None, burst=1, wait=False, timeout=None,
        clock=time.monotonic, sleep=time.sleep):  # fmt: skip
    """Run a scenario against ``store`` (a :class:`SandboxStore`); returns its result dict.

    ``clock`` and ``sleep`` pace the saves (a test passes a clock it moves by hand).
    """
    steps = normalise_steps(steps)
    operations = plan(int(orders), steps, int(lag))
    scenario.total_ops = len(operations)
    burst = max(1, int(burst))
    spacing = (duration / len(operations)) if duration and operations else 0.0
    heads = {}
    started = clock()
    for number, (index, step) in enumerate(operations):
        if spacing:
            due = started + (number // burst) * burst * spacing
            delay = due - clock()
            if delay > 0.001:
                sleep(delay)
        if step is None:
            heads[index] = store.place_order(kind=kind)["entity_id"]
        else:
            heads[index] = store.act(heads[index], step)["entity_id"]
        scenario.done_ops = number + 1
    elapsed = clock() - started
    result = {
        "id": scenario.id,
        "orders": int(orders),
        "steps": steps,
        "saves": len(operations),
        "entity_ids": [heads[index] for index in sorted(heads)],
        "elapsed": round(elapsed, 3),
        "saves_per_second": round(len(operations) / elapsed, 1) if elapsed else None,
    }
    if wait:
        result["idle"] = store.wait_idle(timeout)
        result["delivered_in"] = round(clock() - started, 3)
    return result
