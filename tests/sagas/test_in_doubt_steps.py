"""A step whose worker died is in doubt: it is run again before anything is decided from it.

In process, deterministically: the next move is claimed and dropped, before or
after its action ran, and the order is cancelled before the lease runs out.
The re-run learns what the dead attempt did, so compensation undoes it.
"""

import pytest

from inventory.models import Product
from orders.services import order_cancel
from sagas import engine
from sagas.models import SagaStep
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    assert_undone_after_done,
    ledger_charges,
    place,
    reloaded,
    saga_of,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)

EFFECT = {
    "reserve_stock": "inventory.reserved",
    "charge_payment": "payment.captured",
    "schedule_shipment": "shipment.scheduled",
}


def crashed_at(in_process, step_name: str, *, performed: bool):
    """An order whose saga's worker died in `step_name`, before or after its action ran."""
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    for _ in range(list(EFFECT).index(step_name)):  # one move per earlier step
        engine.saga_advance(saga.pk)
    move = engine._claim(saga.pk)
    assert move is not None and saga.steps.get(index=move.step_index).name == step_name
    if performed:
        engine._perform(move)
    return order


@pytest.mark.parametrize("step_name", list(EFFECT))
def test_a_step_in_doubt_when_the_order_is_cancelled_is_rerun_then_undone(
    in_process, mug, step_name
):
    # given: one worker died before acting, the other after acting
    before = crashed_at(in_process, step_name, performed=False)
    after = crashed_at(in_process, step_name, performed=True)
    # when: both orders are cancelled before the leases run out
    for order in (before, after):
        order_cancel(order_id=order.id)
    in_process.run_until_quiet()
    # then: each step was run again, and whatever it did was undone
    for order in (before, after):
        assert reloaded(order).status == "cancelled"
        step = saga_of(order).steps.get(name=step_name)
        assert (step.status, step.attempts) == (SagaStep.Status.COMPENSATED, 2)
        assert EFFECT[step_name] in timeline(order)
        assert_undone_after_done(timeline(order))
        assert_final_state_is_consistent(order)
    assert Product.objects.get(sku="MUG-1").reserved == 0


@pytest.mark.parametrize("step_name", list(EFFECT))
def test_a_step_in_doubt_is_rerun_after_its_lease_and_the_order_confirmed_once(
    in_process, mug, step_name
):
    order = crashed_at(in_process, step_name, performed=True)
    in_process.run_until_quiet()
    order = reloaded(order)
    assert order.status == "confirmed"
    assert saga_of(order).steps.get(name=step_name).attempts == 2
    assert timeline(order).count(EFFECT[step_name]) == 1
    assert len(ledger_charges(order)) == 1
    assert_final_state_is_consistent(order)
