"""Every saga message delivered twice, or run twice at once, still has one effect.

With real workers, the beat-like driver publishes every relay batch twice and
adds two advances per active saga on every tick, on top of the engine's own.
In process, each delivery and each advance is run twice, and then by two
threads at once.
"""

import functools
from collections import Counter

import pytest

from inventory.models import Product, Reservation
from orders.models import TimelineEntry
from payments.models import SandboxLedgerEntry
from shipping.models import SandboxBooking, Shipment
from tests.conftest import run_concurrently
from tests.sagas.scenarios import (
    assert_final_state_is_consistent,
    ledger_charges,
    place,
    reloaded,
    timeline,
    wait_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)

# (token, country, quantity) -> (status, failure_reason, charges made)
CASES = {
    ("tok_visa", "US", 2): ("confirmed", "", 1),
    ("tok_flaky", "US", 1): ("confirmed", "", 1),
    ("tok_visa", "AQ", 1): ("failed", "shipping_unavailable", 1),
    ("tok_chargeDeclined", "US", 1): ("failed", "payment_declined", 0),
    ("tok_visa", "US", 50): ("failed", "insufficient_stock", 0),
}


def place_every_case() -> dict:
    return {case: place(token=case[0], country=case[1], quantity=case[2]) for case in CASES}


def assert_each_effect_once(orders: dict) -> None:
    for case, order in orders.items():
        order = reloaded(order)
        status, reason, charges = CASES[case]
        assert (order.status, order.failure_reason) == (status, reason), timeline(order)
        repeated = {t: n for t, n in Counter(timeline(order)).items() if n > 1}
        assert not repeated, f"{case}: {repeated} in {timeline(order)}"
        assert len(ledger_charges(order)) == charges
        assert_final_state_is_consistent(order)
    confirmed = [o for case, o in orders.items() if CASES[case][0] == "confirmed"]
    assert Reservation.objects.filter(status="active").count() == len(confirmed)
    assert Product.objects.get(sku="MUG-1").reserved == 3
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 3  # visa, flaky, AQ
    assert Shipment.objects.count() == SandboxBooking.objects.count() == len(confirmed)
    assert TimelineEntry.objects.filter(type="order.confirmed").count() == len(confirmed)


def test_real_workers_sent_every_saga_message_twice_do_everything_once(
    saga_worker, beat, mug, settings
):
    # given: every batch published twice, and a flood of extra advances. Commits do
    # not wake the relay, so the duplicating beat is the one that sends each first
    # event (a woken drain would send it once, before beat's next tick).
    settings.OUTBOX_WAKE_ON_COMMIT = False
    worker = saga_worker(OUTBOX_WAKE_ON_COMMIT="false")
    beat.duplicate = True
    # when
    orders = place_every_case()
    for order in orders.values():
        wait_settled(order)
    # then
    assert_each_effect_once(orders)
    log = worker.log.read_text()
    assert '"outcome": "skipped"' in log, "no delivery was ever sent twice"


def test_each_delivery_and_advance_run_twice_in_turn_has_one_effect(in_process, mug):
    orders = place_every_case()
    while in_process.step(times=2):
        pass
    in_process.run_until_quiet()
    assert_each_effect_once(orders)


def test_each_advance_run_by_two_threads_at_once_has_one_effect(in_process, settings, mug):
    # given: a lease long enough that the twin run is a duplicate, not a takeover
    settings.SAGA_STEP_LEASE_SECONDS = 30
    orders = place_every_case()
    # when
    while True:
        if in_process.deliver(times=1):
            continue
        if not in_process.advances:
            break
        saga_id = in_process.advances.popleft()
        run_concurrently(2, functools.partial(in_process.run_advance, saga_id))
    in_process.run_until_quiet()
    # then
    assert_each_effect_once(orders)
