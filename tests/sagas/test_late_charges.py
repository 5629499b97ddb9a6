"""A provider call that outlived its lease leaves no money or parcel with a final order.

Attempt 1 of a step stalls past its lease; the watchdog's attempt 2 times out
(the step is in doubt) or is refused; the order is cancelled or the saga fails,
and compensation finds nothing under the key. Then attempt 1 goes on: before its
request leaves (its fence stops it: it must not charge), or while its request is
in flight (the charge or booking lands late; the fence refuses to record it, and
the step's compensation, asked again, finds it by the key and gives it back at
once, or beat's sweep does). In process, as tests/sagas/test_lost_answers.py:
the test decides what runs when. The last three tests came from a review; each
failed before its fix.
"""

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orders.models import Order
from orders.services import order_cancel
from orders.tasks import call_off_late_bookings
from payments.gateways import GatewayUnavailable, PaymentDeclined
from payments.gateways.sandbox import SandboxGateway
from payments.models import Payment
from payments.services import payments_late_charges_refund
from payments.tasks import refund_late_charges
from sagas import engine
from sagas.models import Saga, SagaStep
from shipping.carriers import CarrierUnavailable
from shipping.carriers.sandbox import SandboxCarrier
from shipping.models import SandboxBooking, Shipment
from shipping.services import shipments_of_ended_orders_cancel
from shipping.tasks import cancel_ended_orders_shipments
from tests.sagas import scenarios
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


class FailsBeforeCharging(SandboxGateway):
    """The gateway is unreachable: nothing is charged, the caller sees a timeout."""

    def charge(self, **call: Any) -> Any:
        raise GatewayUnavailable("connect timed out")


class FailsBeforeBooking(SandboxCarrier):
    """The carrier is unreachable: nothing is booked, the caller sees a timeout."""

    def schedule(self, **call: Any) -> str:
        raise CarrierUnavailable("connect timed out")


class SlowToCharge(SandboxGateway):
    """Runs `meanwhile` (what other workers do) after the request left, before it charges."""

    meanwhile: Callable[[], None] | None = None

    def charge(self, **call: Any) -> Any:
        meanwhile, SlowToCharge.meanwhile = SlowToCharge.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return super().charge(**call)


class SlowToBook(SandboxCarrier):
    """Runs `meanwhile` (what other workers do) after the request left, before it books."""

    meanwhile: Callable[[], None] | None = None

    def schedule(self, **call: Any) -> str:
        meanwhile, SlowToBook.meanwhile = SlowToBook.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return super().schedule(**call)


def in_flight(step_name: str, settings, meanwhile: Callable[[], None]) -> None:
    """The stalled attempt's provider call, once under way, waits for `meanwhile` to happen."""
    if step_name == "charge_payment":
        settings.PAYMENT_GATEWAY = f"{__name__}.SlowToCharge"
        SlowToCharge.meanwhile = meanwhile
    else:
        settings.SHIPPING_CARRIER = f"{__name__}.SlowToBook"
        SlowToBook.meanwhile = meanwhile


# step -> (index, the setting naming its provider, a provider that fails before acting)
PROVIDERS = {
    "charge_payment": (1, "PAYMENT_GATEWAY", "FailsBeforeCharging"),
    "schedule_shipment": (2, "SHIPPING_CARRIER", "FailsBeforeBooking"),
}


def stalled_attempt(
    in_process, step_name: str, token: str = "tok_visa"
) -> tuple[Order, Saga, engine.Move]:
    """The steps before `step_name` done; its attempt 1 claimed and stalled past its lease."""
    return scenarios.stalled_attempt(in_process, PROVIDERS[step_name][0], token=token)


def then_a_timeout(saga: Saga, step_name: str, settings) -> SagaStep:
    """The watchdog's attempt 2 times out without acting: the step is in doubt."""
    index, setting, failing = PROVIDERS[step_name]
    real = getattr(settings, setting)
    setattr(settings, setting, f"{__name__}.{failing}")
    engine.saga_advance(saga.pk)
    setattr(settings, setting, real)
    step = saga.steps.get(index=index)
    assert (step.in_doubt, step.attempts) == (True, 2)
    return step


def stalled_charge_then_a_timeout(in_process, settings) -> tuple[Order, engine.Move]:
    """Stock reserved; attempt 1 of the charge stalled past its lease; attempt 2 timed out."""
    order, saga, stalled = stalled_attempt(in_process, "charge_payment")
    assert then_a_timeout(saga, "charge_payment", settings).status == SagaStep.Status.PENDING
    return order, stalled


def cancel_and_compensate(in_process, order: Order) -> None:
    order_cancel(order_id=order.pk, reason="changed my mind")
    in_process.run_until_quiet()


def test_a_stalled_attempt_that_resumes_after_the_cancel_does_not_charge(in_process, mug, settings):
    order, stalled = stalled_charge_then_a_timeout(in_process, settings)
    # when: the customer cancels; compensation finds no charge and closes the payment
    cancel_and_compensate(in_process, order)
    assert reloaded(order).status == "cancelled"
    assert Payment.objects.get(order_id=order.pk).closed
    # and then the stalled attempt goes on, and its worker records what it got
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    # then: it did not call the gateway; the cancelled order keeps no money
    assert ledger_charges(order) == []
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.PENDING
    assert "payment.captured" not in timeline(order)


def in_flight_through_a_cancel(
    in_process, step_name: str, settings, token: str = "tok_visa"
) -> tuple[Order, engine.Move]:
    """Attempt 1 of the step stalled past its lease; once its provider call is under way,
    attempt 2 times out and the order is cancelled and compensated (nothing found by key)."""
    order, saga, stalled = stalled_attempt(in_process, step_name, token=token)

    def meanwhile() -> None:
        then_a_timeout(saga, step_name, settings)
        cancel_and_compensate(in_process, order)

    in_flight(step_name, settings, meanwhile)
    return order, stalled


def test_a_charge_landing_after_the_cancel_is_refunded_at_once(in_process, mug, settings):
    # when: attempt 1's request is in flight while attempt 2 times out and the order is
    # cancelled and compensated
    order, stalled = in_flight_through_a_cancel(in_process, "charge_payment", settings)
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    # then: the charge it made was recorded and refunded; the order keeps nothing
    assert reloaded(order).status == "cancelled"
    assert len(ledger_charges(order)) == 1
    assert net_money(order) == Decimal("0.00")
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED
    assert timeline(order)[-2:] == ["payment.captured", "payment.refunded"]


def test_a_booking_landing_after_the_cancel_is_called_off_at_once(in_process, mug, settings):
    # given: stock reserved and paid; while booking attempt 1's request is in flight past
    # its lease, attempt 2 times out and the order is cancelled and compensated (no
    # booking found)
    # when: the stalled attempt's booking lands
    order, stalled = in_flight_through_a_cancel(in_process, "schedule_shipment", settings)
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    # then: the booking was recorded and called off at once
    assert reloaded(order).status == "cancelled"
    assert SandboxBooking.objects.get().cancelled
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.CANCELLED
    assert timeline(order)[-2:] == ["shipment.scheduled", "shipment.cancelled"]
    assert_final_state_is_consistent(order)


def test_a_late_charge_whose_refund_fails_is_refunded_by_the_sweep(in_process, mug, settings):
    # given: the in-flight charge of the test above, on a card whose first two refunds
    # fail (tok_refundFlaky): its immediate refund fails, so it stays captured
    order, stalled = in_flight_through_a_cancel(
        in_process, "charge_payment", settings, token="tok_refundFlaky"
    )
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    payment = Payment.objects.get(order_id=order.pk)
    assert (payment.status, payment.closed) == (Payment.Status.CAPTURED, True)
    assert net_money(order) == payment.amount
    # when: beat's sweep runs (the second refund attempt fails too, the third succeeds)
    swept = [payments_late_charges_refund(), refund_late_charges()]  # the service, the task
    # then
    assert swept == [0, 1]
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED
    assert net_money(order) == Decimal("0.00")
    assert payments_late_charges_refund() == 0
    assert timeline(order).count("payment.refunded") == 1


class Declines(SandboxGateway):
    """Refuses the key for good without charging (what the attempt that re-asks is told)."""

    def charge(self, **call: Any) -> Any:
        raise PaymentDeclined("do not honour")


def test_a_booking_landing_while_a_failed_saga_compensates_is_called_off(in_process, mug, settings):
    # given: reserved and paid; booking attempt 1 stalls past its lease; attempt 2 times
    # out and is the last one allowed, so the step fails in doubt and the saga compensates
    settings.SAGA_MAX_ATTEMPTS = 2
    order, saga, stalled = stalled_attempt(in_process, "schedule_shipment")

    def meanwhile() -> None:
        then_a_timeout(saga, "schedule_shipment", settings)  # attempt 2: transient, exhausted
        engine.saga_advance(saga.pk)  # compensation of the booking step: nothing found
        assert saga.steps.get(index=2).compensated_at is not None
        assert reloaded(order).status == "pending"  # refund and release still to come

    # when: the stalled attempt's booking lands now, before fail_order
    in_flight("schedule_shipment", settings, meanwhile)
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    # then: the failed order holds no scheduled shipment
    assert reloaded(order).status == "failed"
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.CANCELLED
    assert_final_state_is_consistent(order)


def test_a_charge_landing_after_a_refusal_of_the_re_ask_is_given_back(in_process, mug, settings):
    # given: charge attempt 1's request is in flight past its lease (it never records an
    # outcome, so the step is not in doubt); meanwhile the watchdog's attempt 2 is refused
    # for good, the saga compensates and the order fails
    order, _, stalled = stalled_attempt(in_process, "charge_payment")

    def meanwhile() -> None:
        settings.PAYMENT_GATEWAY = f"{__name__}.Declines"
        in_process.run_until_quiet()
        assert reloaded(order).status == "failed"
        settings.PAYMENT_GATEWAY = f"{__name__}.SlowToCharge"

    settings.PAYMENT_GATEWAY = f"{__name__}.SlowToCharge"
    SlowToCharge.meanwhile = meanwhile
    # when: attempt 1's charge lands at the gateway after all that
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    # then: the failed order keeps no money
    payment = Payment.objects.get(order_id=order.pk)
    assert payment.status != Payment.Status.CAPTURED, (payment.status, payment.closed)
    assert net_money(order) == 0
    assert_final_state_is_consistent(order)


class CancelsMeanwhile(SandboxCarrier):
    def schedule(self, **call: Any) -> str:
        order_cancel(order_id=call["order_id"], reason="changed my mind")
        return super().schedule(**call)


def test_an_order_cancelled_while_its_booking_is_in_flight_ends_consistent(
    in_process, mug, settings
):
    # A live (not stale) attempt: the order is cancelled while the booking call is in
    # flight; the saga is still running, so compensation, not the guard, calls it off.
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    engine.saga_advance(saga.pk, moves=2)
    settings.SHIPPING_CARRIER = f"{__name__}.CancelsMeanwhile"
    engine.saga_advance(saga.pk)
    settings.SHIPPING_CARRIER = "shipping.carriers.sandbox.SandboxCarrier"
    in_process.run_until_quiet()
    assert reloaded(order).status == "cancelled"
    assert_undone_after_done(timeline(order))
    assert_final_state_is_consistent(order)


class CancelFailsOnce(SandboxCarrier):
    """The carrier's first call-off fails; later ones go through."""

    failed = False

    def cancel(self, **call: Any) -> None:
        if not CancelFailsOnce.failed:
            CancelFailsOnce.failed = True
            raise CarrierUnavailable("cancel timed out")
        super().cancel(**call)


def test_a_late_booking_whose_call_off_fails_is_called_off_by_the_sweep(in_process, mug, settings):
    # given: the late booking of the test above, whose immediate call-off fails
    order, saga, stalled = stalled_attempt(in_process, "schedule_shipment")

    def meanwhile() -> None:
        then_a_timeout(saga, "schedule_shipment", settings)
        settings.SHIPPING_CARRIER = f"{__name__}.CancelFailsOnce"
        CancelFailsOnce.failed = False
        cancel_and_compensate(in_process, order)

    in_flight("schedule_shipment", settings, meanwhile)
    engine._record(stalled, engine._perform(stalled))
    in_process.run_until_quiet()
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.SCHEDULED
    assert not SandboxBooking.objects.get().cancelled
    # when: beat's sweep runs (within the grace it leaves the shipment to compensation)
    assert cancel_ended_orders_shipments() == 0  # the beat task, default grace
    assert shipments_of_ended_orders_cancel(grace=timedelta(0)) == 1
    # then
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.CANCELLED
    assert SandboxBooking.objects.get().cancelled
    assert timeline(order).count("shipment.cancelled") == 1
    assert shipments_of_ended_orders_cancel(grace=timedelta(0)) == 0
    assert_final_state_is_consistent(order)


def test_a_late_charge_that_nobody_recorded_is_found_and_refunded_by_the_sweep(
    in_process, mug, settings
):
    # given: the in-flight charge of the tests above lands after compensation closed the
    # payment, and the stale attempt's worker dies before its outcome is handled: the
    # fence refused the capture, and nobody asked the gateway again
    order, stalled = in_flight_through_a_cancel(in_process, "charge_payment", settings)
    engine._perform(stalled)
    in_process.run_until_quiet()
    payment = Payment.objects.get(order_id=order.pk)
    assert (payment.status, payment.closed) == (Payment.Status.PENDING, True)
    assert net_money(order) == payment.amount
    # when: beat's sweep asks the gateway again by the payment's key
    assert refund_late_charges() == 1
    # then: the charge is recorded and given back, once
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED
    assert net_money(order) == Decimal("0.00")
    assert timeline(order)[-2:] == ["payment.captured", "payment.refunded"]
    assert refund_late_charges() == 0
    assert_final_state_is_consistent(order)


def test_a_late_booking_that_nobody_recorded_is_found_and_called_off_by_the_sweep(
    in_process, mug, settings
):
    # given: booking attempt 1 is in flight past its lease; attempt 2 times out; the order
    # is cancelled and compensated (nothing found under the key); then attempt 1's booking
    # lands and its worker dies before its outcome is handled (no record, no second look)
    order, stalled = in_flight_through_a_cancel(in_process, "schedule_shipment", settings)
    engine._perform(stalled)
    in_process.run_until_quiet()
    assert reloaded(order).status == "cancelled"
    assert not Shipment.objects.filter(order_id=order.pk).exists()
    assert not SandboxBooking.objects.get().cancelled
    # when: beat's sweep asks the carrier again by the step's key
    assert call_off_late_bookings() == 1
    # then: the cancelled order keeps no parcel booked at the carrier, and says so
    assert SandboxBooking.objects.get().cancelled
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.CANCELLED
    assert timeline(order)[-2:] == ["shipment.scheduled", "shipment.cancelled"]
    assert call_off_late_bookings() == 0
    assert_final_state_is_consistent(order)
