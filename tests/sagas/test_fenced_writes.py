"""A fenced write and a claim of its step racing: the write waits, then writes nothing.

The fence is checked in the write's own statement (shopflow/fences.py,
sagas/fencing.py). In READ COMMITTED that statement's snapshot may predate a
claim that already bumped the step's token; the row lock in the same statement
waits for the claim's commit and re-reads the row, so the write is refused.
Checked against a naive version (the same statement without `FOR UPDATE`): it
reserved the stock for the stale attempt.
"""

import threading
import time

import psycopg
import pytest
from django.db import connection

from inventory.models import Product, Reservation
from inventory.services import reservation_create
from sagas import engine
from sagas.fencing import Fence, StaleAttempt
from sagas.models import SagaStep
from tests.sagas.scenarios import place, saga_of

pytestmark = pytest.mark.django_db(transaction=True)


def claim_in_flight(step: SagaStep, started: threading.Event, go: threading.Event) -> None:
    """Another worker re-claims the step: bumps its token, commits only when told to."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        password=db["PASSWORD"] or None, dbname=db["NAME"],
    ) as other:  # fmt: skip
        other.execute("UPDATE sagas_sagastep SET fence = fence + 1 WHERE id = %s", [step.pk])
        started.set()
        go.wait(10)
        time.sleep(0.3)  # the fenced write is waiting for this row by now
        other.commit()


def test_a_write_racing_a_reclaim_of_its_step_writes_nothing(in_process, mug):
    # given: attempt 1 of the reservation claimed, and a re-claim of the step uncommitted
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    move = engine._claim(saga.pk)
    step = SagaStep.objects.get(saga=saga, index=move.step_index)
    started, go = threading.Event(), threading.Event()
    other = threading.Thread(target=claim_in_flight, args=(step, started, go))
    other.start()
    assert started.wait(10)
    # when: attempt 1 reserves while the re-claim commits
    go.set()
    fence = Fence(saga.pk, move.step_index, move.fence)
    with pytest.raises(StaleAttempt):
        reservation_create(order_id=order.pk, lines={"MUG-1": 2}, fence=fence)
    other.join()
    # then: nothing is reserved for the stale attempt
    assert not Reservation.objects.filter(order_id=order.pk).exists()
    assert Product.objects.get(pk=mug.pk).reserved == 0


def test_a_write_by_the_attempt_holding_its_step_goes_through(in_process, mug):
    # given: attempt 1 of the reservation claimed and still current
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    move = engine._claim(saga.pk)
    fence = Fence(saga.pk, move.step_index, move.fence)
    # when: it reserves
    reservation = reservation_create(order_id=order.pk, lines={"MUG-1": 2}, fence=fence)
    # then: the write went through for the attempt holding the step
    assert reservation.pk is not None
    assert Product.objects.get(pk=mug.pk).reserved == 2
