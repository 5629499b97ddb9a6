"""A worker killed in the middle of a charge: the order still ends right, charged exactly once.

The sandbox gateway takes 2 s per call, half to receive it and half to answer,
so a kill can land before the gateway charged, or after it charged but before
anyone heard. The step's lease (3 s in tests) runs out, the watchdog asks for
the step again, and the retry reuses the step's idempotency key.
"""

import os
import signal

import pytest

from payments.models import Payment, SandboxLedgerEntry
from sagas.models import SagaStep
from tests.conftest import wait_until
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    ledger_charges,
    place,
    saga_of,
    timeline,
    wait_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)


def charge_in_flight(order, *, gateway_charged: bool) -> bool:
    saga = saga_of(order)
    if saga is None or saga.steps.get(name="charge_payment").status != SagaStep.Status.RUNNING:
        return False
    payment = Payment.objects.filter(order_id=order.id).first()
    if payment is None or payment.status != Payment.Status.PENDING:
        return False
    return bool(ledger_charges(order)) == gateway_charged


@pytest.mark.parametrize(
    "gateway_charged", [False, True], ids=["before-charging", "after-charging"]
)
def test_a_pool_process_killed_mid_charge_leaves_the_order_confirmed_and_charged_once(
    saga_worker, mug, gateway_charged
):
    # given: the charge is in flight, on one side or the other of the money moving
    worker = saga_worker(PAYMENT_SANDBOX_DELAY_SECONDS="2")
    order = place()
    assert wait_until(
        lambda: charge_in_flight(order, gateway_charged=gateway_charged), timeout=20, interval=0.02
    ), "never saw the charge in flight"
    # when
    victims = worker.pool_pids()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    # then
    order = wait_settled(order, timeout=40)
    assert order.status == "confirmed", timeline(order)
    charges = ledger_charges(order)
    assert len(charges) == 1
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1
    assert Payment.objects.get(order_id=order.id).provider_ref == charges[0].reference
    # the killed attempt, then the one the watchdog asked for after the lease
    assert saga_of(order).steps.get(name="charge_payment").attempts == 2
    assert timeline(order).count("payment.captured") == 1
    assert not set(victims) & set(worker.pool_pids())
    assert_final_state_is_consistent(order)
