"""Cancelling an order at any point of its saga leaves no stock held, no money taken, no parcel.

Windows are opened for real: a test-held lock on the product row keeps the
reservation waiting, and a 2-second sandbox gateway keeps a charge in flight
while the order is cancelled.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from inventory.models import Product
from orders.services import order_cancel
from payments.models import Payment, SandboxLedgerEntry
from sagas.models import Saga, SagaStep
from shipping.models import Shipment
from tests.conftest import wait_until
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    assert_undone_after_done,
    ledger_charges,
    place,
    saga_of,
    timeline,
    wait_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_GATEWAY = {"PAYMENT_SANDBOX_DELAY_SECONDS": "2"}


@contextmanager
def stock_locked(sku: str) -> Iterator[None]:
    """Hold the product's row lock from another connection, as a slow concurrent order would."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                # FOR NO KEY UPDATE: placing an order (its items' foreign key) can still
                # read the row; the reservation's FOR UPDATE has to wait.
                Product.objects.select_for_update(no_key=True).get(sku=sku)
                locked.set()
                release.wait(timeout=20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        yield
    finally:
        release.set()
        holder.join()


def step_is(order, name: str, *statuses: str, attempts: int = 1) -> bool:
    saga = saga_of(order)
    if saga is None:
        return False
    step = saga.steps.get(name=name)
    return step.status in statuses and step.attempts >= attempts


def cancel_requested(order) -> bool:
    saga = saga_of(order)
    return saga is not None and saga.cancel_requested


def assert_cancelled_and_undone(order) -> list[str]:
    assert order.status == "cancelled"
    assert saga_of(order).status == Saga.Status.COMPENSATED
    assert_final_state_is_consistent(order)
    assert Product.objects.get(sku="MUG-1").reserved == 0
    types = timeline(order)
    assert_undone_after_done(types)
    return types


def test_an_order_cancelled_before_its_saga_starts_never_touches_stock_or_money(
    saga_worker, beat, settings, mug
):
    # given: nothing drains the outbox while the order is placed and cancelled
    saga_worker()
    settings.OUTBOX_WAKE_ON_COMMIT = False
    beat.paused.set()
    order = place()
    order_cancel(order_id=order.id, reason="changed my mind")
    # when
    beat.paused.clear()
    order = wait_settled(order)
    # then
    types = assert_cancelled_and_undone(order)
    assert types == ["order.created", "order.cancelled"]
    assert ledger_charges(order) == []


def test_an_order_cancelled_while_its_stock_is_being_reserved_gets_it_released(saga_worker, mug):
    saga_worker()
    with stock_locked("MUG-1"):
        # given: the reservation waits for the product's lock
        order = place()
        assert wait_until(lambda: step_is(order, "reserve_stock", "running"), timeout=10)
        # when
        order_cancel(order_id=order.id)
        assert wait_until(lambda: cancel_requested(order), timeout=10)
    # then: the reservation went through after the cancel, and was undone; nothing was charged
    order = wait_settled(order)
    types = assert_cancelled_and_undone(order)
    assert types == ["order.created", "order.cancelled", "inventory.reserved", "inventory.released"]
    assert not Payment.objects.filter(order_id=order.id).exists()


def test_cancelling_a_confirmed_order_cancels_the_shipment_refunds_and_releases(saga_worker, mug):
    saga_worker()
    order = wait_settled(place())
    assert order.status == "confirmed"
    # when
    order_cancel(order_id=order.id, reason="too late")
    # then
    order = wait_settled(order)
    types = assert_cancelled_and_undone(order)
    assert types[-4:] == [
        "order.cancelled", "shipment.cancelled", "payment.refunded", "inventory.released"
    ]  # fmt: skip
    assert Shipment.objects.get(order_id=order.id).status == "cancelled"
    assert Payment.objects.get(order_id=order.id).status == "refunded"


def test_an_order_cancelled_while_its_charge_is_retried_stops_retrying(saga_worker, mug):
    saga_worker(**SLOW_GATEWAY)
    order = place(token="tok_down")
    assert wait_until(lambda: step_is(order, "charge_payment", "pending", attempts=1), timeout=15)
    # when
    order_cancel(order_id=order.id)
    # then
    order = wait_settled(order)
    types = assert_cancelled_and_undone(order)
    assert types == ["order.created", "inventory.reserved", "order.cancelled", "inventory.released"]
    charge = saga_of(order).steps.get(name="charge_payment")
    assert charge.attempts < 5, "the cancel did not cut the retries short"
    assert Payment.objects.get(order_id=order.id).status == "pending"
    assert ledger_charges(order) == []


def test_a_charge_in_flight_when_the_order_is_cancelled_is_refunded_after_it_lands(
    saga_worker, mug
):
    saga_worker(**SLOW_GATEWAY)
    order = place()
    # given: the gateway has the charge request (the payment row exists) and has not answered
    assert wait_until(
        lambda: step_is(order, "charge_payment", "running")
        and Payment.objects.filter(order_id=order.id).exists(),
        timeout=15,
    )
    # when
    order_cancel(order_id=order.id)
    assert wait_until(lambda: cancel_requested(order), timeout=10)
    assert saga_of(order).steps.get(name="charge_payment").status == SagaStep.Status.RUNNING
    # then: the charge landed after the cancel; it was refunded, the stock released, no parcel
    order = wait_settled(order)
    types = assert_cancelled_and_undone(order)
    assert types == [
        "order.created", "inventory.reserved", "order.cancelled", "payment.captured",
        "payment.refunded", "inventory.released",
    ]  # fmt: skip
    assert not Shipment.objects.filter(order_id=order.id).exists()
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1
