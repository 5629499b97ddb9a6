"""A provider call that timed out may have acted: compensation finds it by its key and undoes it.

The contract's sandboxes always fail before acting, so these providers act
first and then lose the answer: a charge made, a pickup booked, and the caller
told "unavailable". In process, deterministically (tests/sagas/scenarios.py).
"""

from decimal import Decimal
from typing import Any

import pytest

from orders.services import order_cancel
from payments.gateways import GatewayUnavailable, PaymentDeclined
from payments.gateways.sandbox import SandboxGateway
from payments.models import SandboxLedgerEntry
from sagas import engine
from sagas.models import SagaStep
from shipping.carriers import CarrierUnavailable
from shipping.carriers.sandbox import SandboxCarrier
from shipping.models import SandboxBooking, Shipment
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    assert_undone_after_done,
    ledger_charges,
    net_money,
    place,
    reloaded,
    saga_of,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)


class ChargesThenTimesOut(SandboxGateway):
    """Takes the money, then the answer is lost on the way back."""

    def charge(self, **call: Any) -> Any:
        super().charge(**call)
        raise GatewayUnavailable("read timed out")


class TimesOutThenRefuses(SandboxGateway):
    """Charges and loses the answer, then refuses the retry for good (a provider that
    reports a key it already used as a permanent conflict)."""

    def charge(self, **call: Any) -> Any:
        if SandboxLedgerEntry.objects.filter(idempotency_key=call["idempotency_key"]).exists():
            raise PaymentDeclined("idempotency key already used")
        super().charge(**call)
        raise GatewayUnavailable("read timed out")


class BooksThenTimesOut(SandboxCarrier):
    """Books the pickup, then the answer is lost on the way back."""

    def schedule(self, **call: Any) -> str:
        super().schedule(**call)
        raise CarrierUnavailable("read timed out")


@pytest.fixture
def lost_charges(settings):
    settings.PAYMENT_GATEWAY = f"{__name__}.ChargesThenTimesOut"


@pytest.fixture
def lost_bookings(settings):
    settings.SHIPPING_CARRIER = f"{__name__}.BooksThenTimesOut"


def test_a_charge_whose_answer_was_lost_is_refunded_when_the_order_is_cancelled(
    in_process, mug, lost_charges
):
    # given: stock reserved, then a charge that took the money and timed out
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    engine.saga_advance(saga.pk)  # reserve
    engine.saga_advance(saga.pk)  # charge: money moved, the answer did not
    charge_step = saga.steps.get(name="charge_payment")
    assert (charge_step.status, charge_step.in_doubt) == (SagaStep.Status.PENDING, True)
    assert len(ledger_charges(order)) == 1
    # when: the customer cancels while the charge waits for its retry
    order_cancel(order_id=order.pk, reason="changed my mind")
    in_process.run_until_quiet()
    # then: the charge was found by its key, recorded, and refunded; the stock is back
    order = reloaded(order)
    assert order.status == "cancelled"
    assert net_money(order) == Decimal("0.00")
    types = timeline(order)
    assert types.index("payment.captured") < types.index("payment.refunded")
    assert "inventory.released" in types
    assert_undone_after_done(types)
    # cancelled between attempts, it reads compensated; its doubt is settled
    step = saga.steps.get(name="charge_payment")
    assert (step.status, step.in_doubt) == (SagaStep.Status.COMPENSATED, False)
    assert_final_state_is_consistent(order)


def test_a_gateway_that_never_answers_fails_the_order_and_gives_back_what_it_took(
    in_process, mug, lost_charges
):
    order = place()
    in_process.deliver()
    in_process.run_until_quiet()

    order = reloaded(order)
    assert (order.status, order.failure_reason) == ("failed", "payment_unavailable")
    charges = ledger_charges(order)
    assert len(charges) == 1  # every retry used the same key: one charge at most
    assert net_money(order) == Decimal("0.00")
    assert timeline(order)[-3:] == ["payment.refunded", "inventory.released", "order.failed"]
    # the step that broke the saga still reads failed, though its charge was undone
    step = saga_of(order).steps.get(name="charge_payment")
    assert (step.status, step.in_doubt) == (SagaStep.Status.FAILED, False)
    assert step.compensated_at is not None
    assert_final_state_is_consistent(order)


def test_a_refusal_after_a_lost_answer_still_gives_the_money_back(in_process, mug, settings):
    settings.PAYMENT_GATEWAY = f"{__name__}.TimesOutThenRefuses"
    order = place()
    in_process.deliver()
    in_process.run_until_quiet()

    order = reloaded(order)
    assert (order.status, order.failure_reason) == ("failed", "payment_declined")
    assert len(ledger_charges(order)) == 1
    assert net_money(order) == Decimal("0.00")
    assert_final_state_is_consistent(order)


def test_a_booking_whose_answer_was_lost_is_called_off(in_process, mug, lost_bookings):
    order = place()
    in_process.deliver()
    in_process.run_until_quiet()

    order = reloaded(order)
    assert (order.status, order.failure_reason) == ("failed", "shipping_unavailable")
    booking = SandboxBooking.objects.get()
    assert booking.cancelled
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.CANCELLED
    assert timeline(order)[-5:] == [
        "shipment.scheduled", "shipment.cancelled", "payment.refunded", "inventory.released",
        "order.failed",
    ]  # fmt: skip
    assert net_money(order) == Decimal("0.00")
    assert_final_state_is_consistent(order)


def test_a_timeout_before_anything_moved_undoes_nothing_it_did_not_do(in_process, mug):
    order = place(token="tok_down")  # the sandbox fails before charging
    in_process.deliver()
    in_process.run_until_quiet()

    order = reloaded(order)
    assert (order.status, order.failure_reason) == ("failed", "payment_unavailable")
    assert timeline(order) == [
        "order.created", "inventory.reserved", "inventory.released", "order.failed"
    ]  # fmt: skip
    assert not SandboxLedgerEntry.objects.exists()
    assert_final_state_is_consistent(order)
