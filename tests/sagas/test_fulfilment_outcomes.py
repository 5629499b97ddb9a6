"""Every sandbox input of CONTRACT §3 ends in its outcome, compensating exactly what was done.

One real worker serves the module, with the production backoff (0.5 s doubling,
capped at 8 s), so `tok_down` shows the default retry policy giving up in time.
"""

from datetime import timedelta

import pytest

from payments.models import Payment
from sagas.models import SagaStep
from shipping.models import Shipment
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    ledger_charges,
    place,
    saga_of,
    timeline,
    wait_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)

PRODUCTION_BACKOFF = {"SAGA_BACKOFF_BASE": "0.5", "SAGA_BACKOFF_MAX": "8"}


@pytest.fixture(autouse=True)
def worker(saga_worker):
    return saga_worker(**PRODUCTION_BACKOFF)


@pytest.mark.parametrize(
    ("token", "country", "status", "reason", "payment", "shipment"),
    [
        ("tok_visa", "US", "confirmed", "", "captured", "scheduled"),
        ("tok_chargeDeclined", "US", "failed", "payment_declined", "declined", None),
        ("tok_flaky", "US", "confirmed", "", "captured", "scheduled"),
        ("tok_refundFlaky", "AQ", "failed", "shipping_unavailable", "refunded", None),
    ],
)
def test_sandbox_input_ends_in_its_outcome(mug, token, country, status, reason, payment, shipment):
    # when
    order = wait_settled(place(token=token, country=country))
    # then
    assert (order.status, order.failure_reason) == (status, reason)
    assert Payment.objects.get(order_id=order.id).status == payment
    got_shipment = Shipment.objects.filter(order_id=order.id).first()
    assert (got_shipment.status if got_shipment else None) == shipment
    mug.refresh_from_db()
    assert (mug.on_hand, mug.reserved) == (10, 2 if status == "confirmed" else 0)
    assert_final_state_is_consistent(order)


def test_insufficient_stock_fails_the_order_with_nothing_to_undo(mug):
    order = wait_settled(place(quantity=11))
    assert (order.status, order.failure_reason) == ("failed", "insufficient_stock")
    assert not Payment.objects.filter(order_id=order.id).exists()
    assert timeline(order) == ["order.created", "inventory.reservation_rejected", "order.failed"]
    assert [s.status for s in saga_of(order).steps.all()] == ["failed", "pending", "pending"]


def test_declined_charge_releases_the_stock_and_nothing_else(mug):
    order = wait_settled(place(token="tok_chargeDeclined"))
    assert (order.status, order.failure_reason) == ("failed", "payment_declined")
    assert timeline(order) == [
        "order.created", "inventory.reserved", "payment.declined", "inventory.released",
        "order.failed",
    ]  # fmt: skip
    assert ledger_charges(order) == []
    assert [s.status for s in saga_of(order).steps.all()] == ["compensated", "failed", "pending"]


def test_rejected_shipment_refunds_then_releases(mug):
    order = wait_settled(place(country="AQ"))
    assert (order.status, order.failure_reason) == ("failed", "shipping_unavailable")
    assert timeline(order) == [
        "order.created", "inventory.reserved", "payment.captured", "shipment.rejected",
        "payment.refunded", "inventory.released", "order.failed",
    ]  # fmt: skip
    steps = list(saga_of(order).steps.all())
    assert [s.status for s in steps] == ["compensated", "compensated", "failed"]
    # compensated in reverse: the refund finished before the release
    assert steps[1].compensated_at < steps[0].compensated_at
    assert_final_state_is_consistent(order)


def test_a_provider_that_stays_down_fails_the_order_within_a_minute(mug):
    # given the production backoff, and a gateway that never answers
    order = place(token="tok_down")
    # when
    order = wait_settled(order, timeout=60)
    # then: retries ran out, the stock came back, no money moved. The timed-out charge
    # was in doubt, so it was looked up by its key (nothing found) before giving up.
    assert (order.status, order.failure_reason) == ("failed", "payment_unavailable")
    charge = saga_of(order).steps.get(name="charge_payment")
    assert (charge.status, charge.attempts, charge.in_doubt) == (SagaStep.Status.FAILED, 5, False)
    assert charge.compensated_at is not None and "GatewayUnavailable" in charge.last_error
    assert timeline(order) == [
        "order.created", "inventory.reserved", "inventory.released", "order.failed"
    ]  # fmt: skip
    assert order.updated_at - order.created_at < timedelta(seconds=60)
    assert ledger_charges(order) == []
    assert_final_state_is_consistent(order)
