"""One `sagas.advance` task makes every move that is due at once, within its budget.

In process: the advances the engine would send to Celery are queued by the
test, so it sees exactly which moves one call made and what it left to a new
task. Each move is still claimed and recorded under the saga's lock; only the
message and the separate claiming transaction between two moves are saved.
"""

from dataclasses import replace
from typing import Any

import pytest

from orders import fulfilment
from orders.models import Status
from orders.services import order_cancel
from sagas import definitions, engine, tasks
from sagas.models import Saga, SagaStep
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    assert_undone_after_done,
    place,
    reloaded,
    saga_of,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)


def started(in_process) -> tuple[Any, Saga]:
    """An order whose saga has started and whose first advance is queued (and taken)."""
    order = place()
    in_process.deliver()
    assert list(in_process.advances) == [str(saga_of(order).pk)]
    in_process.advances.clear()
    return order, saga_of(order)


def step_statuses(saga: Saga) -> list[str]:
    return list(saga.steps.order_by("index").values_list("status", flat=True))


def test_one_call_runs_the_whole_happy_path_without_another_message(in_process, mug):
    order, saga = started(in_process)

    engine.saga_advance(saga.pk, moves=8)

    assert reloaded(order).status == Status.CONFIRMED
    assert step_statuses(saga) == [SagaStep.Status.DONE] * 3
    assert not in_process.advances
    assert timeline(order)[-1] == "order.confirmed"


def test_the_budget_hands_the_remaining_moves_to_a_new_task(in_process, mug):
    order, saga = started(in_process)

    engine.saga_advance(saga.pk, moves=2)

    assert step_statuses(saga) == [SagaStep.Status.DONE, SagaStep.Status.DONE, "pending"]
    assert list(in_process.advances) == [str(saga.pk)]
    assert reloaded(order).status == Status.PENDING
    engine.saga_advance(saga.pk, moves=2)
    assert reloaded(order).status == Status.CONFIRMED


def test_the_task_uses_the_moves_per_task_setting(in_process, mug, settings):
    settings.SAGA_MOVES_PER_TASK = 1
    order, saga = started(in_process)

    tasks.advance_saga(str(saga.pk))

    assert step_statuses(saga) == [SagaStep.Status.DONE, "pending", "pending"]
    settings.SAGA_MOVES_PER_TASK = 8
    tasks.advance_saga(str(saga.pk))
    assert reloaded(order).status == Status.CONFIRMED


def test_a_transient_failure_ends_the_run_and_waits_for_its_backoff(
    in_process, mug, monkeypatch, settings
):
    settings.SAGA_BACKOFF_BASE = settings.SAGA_BACKOFF_MAX = 0.5
    countdowns: list[float | None] = []
    monkeypatch.setattr(
        tasks.advance_saga,
        "apply_async",
        lambda args=(), kwargs=None, countdown=None, **options: countdowns.append(countdown),
    )
    order = place(token="tok_flaky")
    in_process.deliver()
    saga = saga_of(order)
    countdowns.clear()

    engine.saga_advance(saga.pk, moves=8)

    # Stock reserved, then the first charge attempt failed: no further move in this call,
    # and the next one is a new task after the backoff (0.25 to 0.5 s with jitter).
    assert step_statuses(saga) == [SagaStep.Status.DONE, "pending", "pending"]
    assert saga.steps.get(index=1).attempts == 1
    assert len(countdowns) == 1 and 0.25 <= countdowns[0] <= 0.5
    assert reloaded(order).status == Status.PENDING


def test_a_cancel_during_a_step_stops_the_run_at_the_next_boundary(in_process, mug, monkeypatch):
    order, saga = started(in_process)
    charge = fulfilment.charge_payment

    def charge_then_cancel(saga: Saga, fence) -> dict:
        result = charge(saga, fence)
        order_cancel(order_id=order.pk, reason="changed my mind")  # from another request
        return result

    definition = fulfilment.fulfilment
    steps = list(definition.steps)
    steps[1] = replace(steps[1], action=charge_then_cancel)
    monkeypatch.setitem(
        definitions._DEFINITIONS, definition.name, replace(definition, steps=tuple(steps))
    )

    engine.saga_advance(saga.pk, moves=8)

    # The shipment was never scheduled; the call went on to undo the charge and the stock.
    assert saga.steps.get(index=2).attempts == 0
    in_process.run_until_quiet()
    order = reloaded(order)
    assert order.status == Status.CANCELLED
    assert Saga.objects.get(pk=saga.pk).status == Saga.Status.COMPENSATED
    assert_undone_after_done(timeline(order))
    assert_final_state_is_consistent(order)
