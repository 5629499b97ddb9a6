"""A local step is made in the transaction that claims it; a remote step's answer is
written in the transaction that records it.

In process, with the engine's real transactions. A local move that fails other than for
good rolls its whole transaction back and is then claimed and made apart, the classic
way; a provider's answer and its step's outcome commit together or not at all.
"""

from dataclasses import replace
from typing import Any

import pytest
from django.db import OperationalError

from inventory.models import Product, Reservation
from orders import fulfilment
from orders.models import Status
from payments.models import Payment
from sagas import definitions, engine, store
from sagas.models import Saga, SagaStep
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    place,
    reloaded,
    saga_of,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)


def with_step(monkeypatch: Any, index: int, **changes: Any) -> None:
    """The fulfilment saga with one step changed, for this test."""
    definition = fulfilment.fulfilment
    steps = list(definition.steps)
    steps[index] = replace(steps[index], **changes)
    monkeypatch.setitem(
        definitions._DEFINITIONS, definition.name, replace(definition, steps=tuple(steps))
    )


def test_a_local_move_that_breaks_its_transaction_is_made_apart_and_reserves_once(
    in_process, mug, monkeypatch
):
    # given: the reservation's first try breaks its transaction (a lost connection, say)
    reserve, calls = fulfilment.reserve_stock, []

    def breaks_once(saga: Saga, fence: Any) -> dict:
        calls.append(fence.token)
        result = reserve(saga, fence)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return result

    with_step(monkeypatch, 0, action=breaks_once)
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    # when
    engine.saga_advance(saga.pk, moves=8)
    # then: the first try left nothing; the step was claimed again and made apart, once
    assert reloaded(order).status == Status.CONFIRMED
    step = saga.steps.get(index=0)
    assert (step.status, step.attempts, step.fence) == (SagaStep.Status.DONE, 1, 1)
    assert calls == [1, 1]
    assert Reservation.objects.filter(order_id=order.pk).count() == 1
    assert Product.objects.get(pk=mug.pk).reserved == 2
    assert_final_state_is_consistent(order)


def test_a_charge_and_its_steps_outcome_commit_together(in_process, mug, monkeypatch):
    # given: stock reserved, the charge claimed and made; then the recording transaction
    # fails on its last write, the step's (a worker killed there does the same)
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    engine.saga_advance(saga.pk, moves=1)
    move = engine._claim(saga.pk)
    outcome = engine._perform(move)
    save = store.PostgresStore.save

    def fails(self: Any, *args: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store.PostgresStore, "save", fails)
    with pytest.raises(OperationalError):
        engine._record(move, outcome)
    # then: the capture was not recorded without the step's outcome
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.PENDING
    assert saga.steps.get(index=1).status == SagaStep.Status.RUNNING
    # when: the worker records it after all (or the step's next attempt, by the key)
    monkeypatch.setattr(store.PostgresStore, "save", save)
    engine._record(move, outcome)
    # then: both, once
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.CAPTURED
    assert saga.steps.get(index=1).status == SagaStep.Status.DONE
    assert timeline(order).count("payment.captured") == 1
