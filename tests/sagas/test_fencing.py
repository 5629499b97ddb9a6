"""Stale work can never act: only a step's current attempt writes what it did.

An attempt whose lease ran out (a provider slower than the lease, a GC pause, a
frozen VM) goes on running. Each test below lets such an attempt resume at the
worst moment and checks that it changes nothing: the fence (sagas/fencing.py)
refuses its local writes, and the compensation, not the attempt, deals with
what its provider call did. Each failed on main at 31dc0af.
"""

import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from inventory.models import Product, Reservation
from orders import fulfilment
from payments.gateways.sandbox import SandboxGateway
from payments.models import Payment, SandboxLedgerEntry
from payments.services import payment_refund
from sagas import engine
from sagas.models import Saga, SagaStep
from sagas.services import saga_compensate_now, saga_retry
from shipping.models import Shipment
from tests.conftest import run_concurrently, wait_until
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    place,
    reloaded,
    saga_of,
    stalled_attempt,
    timeline,
    wait_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_late_booking_attempt_leaves_a_confirmed_order_its_shipment(in_process, mug):
    # given: booking attempt 1 stalls past its lease; the watchdog's attempt 2 books,
    # and the saga completes: the order is confirmed
    order, _, late = stalled_attempt(in_process, steps_before=2)
    in_process.run_until_quiet()
    assert reloaded(order).status == "confirmed"
    # when: attempt 1 goes on and its (same-key) booking answer arrives
    engine._record(late, engine._perform(late))
    in_process.run_until_quiet()
    # then: the confirmed order keeps its scheduled shipment and its payment
    assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.SCHEDULED
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.CAPTURED
    assert "shipment.cancelled" not in timeline(order)
    assert_final_state_is_consistent(order)


def test_a_stale_reservation_attempt_reserves_nothing_for_a_failed_order(in_process, mug):
    # given: reservation attempt 1 stalls past its lease; meanwhile the stock runs out,
    # the watchdog's attempt 2 is refused, and the order fails
    order, _, late = stalled_attempt(in_process, steps_before=0)
    Product.objects.filter(pk=mug.pk).update(on_hand=1)
    in_process.run_until_quiet()
    assert reloaded(order).status == "failed"
    # when: the shelf is restocked and attempt 1 goes on
    Product.objects.filter(pk=mug.pk).update(on_hand=10)
    engine._record(late, engine._perform(late))
    in_process.run_until_quiet()
    # then: no stock is held for the failed order
    assert not Reservation.objects.filter(order_id=order.pk, status="active").exists()
    assert Product.objects.get(pk=mug.pk).reserved == 0
    assert_final_state_is_consistent(order)


def test_compensate_now_after_the_last_step_fails_the_order(in_process, mug):
    # given: every step is done; only the completing move is left (SAGA_MOVES_PER_TASK 3)
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    engine.saga_advance(saga.pk, moves=3)
    saga.refresh_from_db()
    assert (saga.status, saga.current_step) == (Saga.Status.RUNNING, 3)
    # when: an operator compensates it now
    saga_compensate_now(saga_id=saga.pk)
    in_process.run_until_quiet()
    # then: the saga is compensated and the order failed with a reason the contract knows
    order = reloaded(order)
    assert saga_of(order).status == Saga.Status.COMPENSATED
    assert (order.status, order.failure_reason) == ("failed", "shipping_unavailable")
    assert_final_state_is_consistent(order)


def test_a_compensation_attempt_from_before_a_retry_records_nothing(in_process, mug, settings):
    # given: a confirmed order on a card whose refunds fail, cancelled; the refund's
    # compensation attempt 1 stalls, attempt 2 fails, and the saga needs an operator
    settings.SAGA_COMPENSATION_MAX_ATTEMPTS = 1
    order = place(token="tok_refundFlaky")
    in_process.run_until_quiet()
    from orders.services import order_cancel

    order_cancel(order_id=order.pk, reason="changed my mind")
    in_process.deliver()
    saga = saga_of(order)
    engine.saga_advance(saga.pk)  # the shipment is called off
    old = engine._claim(saga.pk)
    assert (old.step_index, old.compensating) == (1, True)
    time.sleep(0.05)
    engine.saga_advance(saga.pk)  # attempt 2 of the refund: fails, out of attempts
    assert saga_of(order).status == Saga.Status.COMPENSATION_FAILED
    # when: the operator retries, a new attempt is claimed, and the old one reports success
    saga_retry(saga_id=saga.pk)
    settings.SAGA_COMPENSATION_MAX_ATTEMPTS = 5
    new = engine._claim(saga.pk)
    engine._record(old, engine.Outcome(ok=True))
    # then: the old attempt's word counts for nothing; the step is the new attempt's
    step = SagaStep.objects.get(saga=saga, index=1)
    assert step.status == SagaStep.Status.COMPENSATING
    assert (step.fence, step.compensation_attempts) == (new.fence, 3)
    engine._record(new, engine._perform(new))  # the second refund attempt fails too
    in_process.run_until_quiet()  # the third succeeds
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED
    assert_final_state_is_consistent(order)


def test_a_worker_whose_clock_runs_ahead_does_not_take_a_live_step(in_process, mug, settings):
    # given: a step claimed with a lease of 30 s
    settings.SAGA_STEP_LEASE_SECONDS = 30.0
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    live = engine._claim(saga.pk)
    # when: a worker whose clock is 2 minutes ahead asks for the saga's next move
    ahead = timezone.now() + timedelta(minutes=2)
    with mock.patch("django.utils.timezone.now", return_value=ahead):
        engine.saga_advance(saga.pk)
    # then: the step stays with the live attempt
    step = SagaStep.objects.get(saga=saga, index=live.step_index)
    assert step.attempts == 1
    assert step.fence == live.fence


class BarrierRefunds(SandboxGateway):
    """A provider with no cap on refunds: two refunds under two keys both go through."""

    barrier = threading.Barrier(2, timeout=10)

    def refund(self, **call: Any) -> Any:
        BarrierRefunds.barrier.wait()
        return super().refund(**call)

    def _refund_within_charge(self, charge: Any, amount: Decimal, idempotency_key: str) -> Any:
        from payments.gateways.sandbox import _record, _recorded

        return _recorded(SandboxLedgerEntry.Kind.REFUND, idempotency_key) or _record(
            kind=SandboxLedgerEntry.Kind.REFUND,
            reference=f"re_{idempotency_key[-24:]}",
            idempotency_key=idempotency_key,
            charge_reference=charge.reference,
            amount=amount,
            currency=charge.currency,
        )


def test_the_saga_and_an_operator_refunding_at_once_refund_once(in_process, mug, settings):
    # given: a confirmed order, and a provider that would refund twice under two keys
    order = place()
    in_process.run_until_quiet()
    saga = saga_of(order)
    settings.PAYMENT_GATEWAY = f"{__name__}.BarrierRefunds"
    BarrierRefunds.barrier.reset()
    calls = iter(
        [lambda: fulfilment.refund_payment(saga), lambda: payment_refund(order_id=order.pk)]
    )
    lock = threading.Lock()

    def one_of_them() -> None:
        with lock:
            call = next(calls)
        call()

    # when: the saga's compensation and an operator refund at the same moment
    run_concurrently(2, one_of_them)
    # then: the money went back once
    refunds = SandboxLedgerEntry.objects.filter(kind=SandboxLedgerEntry.Kind.REFUND)
    assert refunds.count() == 1
    assert Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED


SLOW_PROVIDERS = {
    "PAYMENT_SANDBOX_DELAY_SECONDS": "2.5",
    "SHIPPING_SANDBOX_DELAY_SECONDS": "2.5",
    "SAGA_STEP_LEASE_SECONDS": "1",
    "SAGA_WAKE_GRACE_SECONDS": "0.5",
}


def test_providers_slower_than_the_lease_confirm_orders_with_their_shipment(saga_worker, mug):
    # given: a gateway and a carrier that each take 2.5 s, and a step lease of 1 s
    saga_worker(**SLOW_PROVIDERS)
    # when: two orders go through
    orders = [place(quantity=1) for _ in range(2)]
    # then: each is confirmed, paid and shipped once, by one attempt per step
    for order in orders:
        assert wait_settled(order, timeout=60), order.pk
        order = reloaded(order)
        assert order.status == "confirmed"
        assert Shipment.objects.get(order_id=order.pk).status == Shipment.Status.SCHEDULED
        assert Payment.objects.get(order_id=order.pk).status == Payment.Status.CAPTURED
        steps = SagaStep.objects.filter(saga=saga_of(order)).order_by("index")
        assert [s.attempts for s in steps] == [1, 1, 1]
        assert_final_state_is_consistent(order)
    assert wait_until(lambda: not Saga.objects.filter(status__in=Saga.ACTIVE).exists())
