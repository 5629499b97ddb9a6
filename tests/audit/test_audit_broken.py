"""Each invariant, broken on purpose in a quiet shop, fails its check naming the culprit.

The breakages are raw UPDATEs and INSERTs, the way a bug or a hand edit would
leave the data: no service would ever write them.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from inventory.models import Product, Reservation
from notifications.models import Notification
from orders.fulfilment import FULFILMENT
from orders.models import TimelineEntry
from outbox.models import Delivery
from outbox.services import deliveries_acknowledge
from payments.models import Payment, SandboxLedgerEntry
from sagas.models import Saga, SagaStep
from sagas.services import saga_mark_resolved
from shopflow.audit import audit_run

pytestmark = pytest.mark.django_db


def failures(**options) -> dict[str, list[str]]:
    """The failed checks and their problem lines."""
    return {c.name: list(c.problems) for c in audit_run(**options).failed}


def named(order) -> str:
    return f"order {order.number} ({order.pk})"


def saga_of(order) -> Saga:
    return Saga.objects.get(definition=FULFILMENT, key=str(order.pk))


def refund_of(order) -> SandboxLedgerEntry:
    charge = Payment.objects.get(order_id=order.pk).provider_ref
    return SandboxLedgerEntry.objects.get(kind="refund", charge_reference=charge)


def test_stock_that_appears_from_nowhere_breaks_stock_conservation(shop):
    # given
    Product.objects.filter(sku="MUG-1").update(on_hand=F("on_hand") + 1)

    # when
    failed = failures()

    # then
    assert failed == {
        "stock_conserved": [
            "product MUG-1: on_hand 18, expected 17 (initial 20 + restocked 0 - committed 3)"
        ]
    }


def test_a_restock_is_part_of_the_expected_stock(shop):
    # given TEA-1 started with 2 and got 3 more; only the delivered order's 2 left
    tea = Product.objects.get(sku="TEA-1")

    # then
    assert (tea.initial_stock, tea.restocked_total, tea.on_hand) == (2, 3, 3)
    assert "stock_conserved" not in failures()


def test_reserved_units_no_reservation_holds_break_the_reserved_count(shop):
    Product.objects.filter(sku="TEA-1").update(reserved=F("reserved") + 1)

    failed = failures()

    assert failed == {
        "reserved_matches_reservations": [
            "product TEA-1: reserved 2, active reservation lines hold 1"
        ]
    }


def test_a_failed_order_still_holding_stock_is_named(shop):
    # given the declined order's released reservation comes back to life
    Reservation.objects.filter(order_id=shop.declined.pk).update(status="active")

    failed = failures()

    assert failed["failed_and_cancelled_orders_hold_nothing"] == [
        f"{named(shop.declined)} is failed but holds reserved stock (active reservation)"
    ]
    assert "product MUG-1" in failed["reserved_matches_reservations"][0]


def test_a_cancelled_order_with_a_captured_payment_is_named(shop):
    Payment.objects.filter(order_id=shop.cancelled.pk).update(status="captured")

    failed = failures()

    assert failed == {
        "failed_and_cancelled_orders_hold_nothing": [
            f"{named(shop.cancelled)} is cancelled but holds a captured payment"
        ]
    }


def test_a_cancelled_order_whose_refund_never_reached_the_gateway_is_named(shop):
    # given the refund is gone from the gateway's ledger, though the payment says refunded
    refund_of(shop.cancelled).delete()

    failed = failures()

    assert failed == {
        "failed_and_cancelled_orders_hold_nothing": [
            f"{named(shop.cancelled)} is cancelled but the gateway's ledger keeps 29.85 "
            "of its charges unrefunded"
        ]
    }


def test_a_failed_order_with_a_live_shipment_is_named(shop):
    from shipping.models import Shipment

    Shipment.objects.create(
        order_id=shop.unshippable.pk, tracking_number="TRK-STRAY", idempotency_key="stray"
    )

    failed = failures()

    assert failed == {
        "failed_and_cancelled_orders_hold_nothing": [
            f"{named(shop.unshippable)} is failed but holds a shipment that is not cancelled"
        ]
    }


def test_a_second_charge_for_an_order_is_named_with_both_references(shop):
    # given the gateway charged the confirmed order again under another key of its saga
    first = SandboxLedgerEntry.objects.get(
        kind="charge", idempotency_key__startswith=f"saga:{saga_of(shop.confirmed).pk}:"
    )
    SandboxLedgerEntry.objects.create(
        kind="charge", reference="ch_again", idempotency_key=f"{first.idempotency_key}:retry",
        token="tok_visa", amount=first.amount, currency="USD",
    )  # fmt: skip

    failed = failures()

    assert failed == {
        "one_charge_per_order": [
            f"{named(shop.confirmed)}: 2 charges in the gateway's ledger: "
            f"{first.reference} (14.45), ch_again (14.45)"
        ]
    }


def test_refunds_beyond_the_charge_are_named(shop):
    refund = refund_of(shop.cancelled)
    SandboxLedgerEntry.objects.create(
        kind="refund", reference="re_extra", idempotency_key="extra",
        charge_reference=refund.charge_reference, amount=Decimal("1.00"), currency="USD",
    )  # fmt: skip

    failed = failures()

    assert failed == {
        "refunds_within_charges": [
            f"charge {refund.charge_reference} ({named(shop.cancelled)}): refunded 30.85 of 29.85"
        ]
    }


def test_a_refund_of_an_unknown_charge_is_named(shop):
    SandboxLedgerEntry.objects.create(
        kind="refund", reference="re_orphan", idempotency_key="orphan",
        charge_reference="ch_nowhere", amount=Decimal("1.00"), currency="USD",
    )  # fmt: skip

    assert failures() == {
        "refunds_within_charges": [
            "refund re_orphan (1.00) names charge ch_nowhere, which is not in the ledger"
        ]
    }


def test_a_confirmed_order_without_its_payment_is_named(shop):
    Payment.objects.filter(order_id=shop.confirmed.pk).update(status="pending")

    assert failures() == {
        "confirmed_orders_hold_stock_and_payment": [
            f"{named(shop.confirmed)} is confirmed but has no captured payment"
        ]
    }


def test_a_confirmed_order_that_lost_its_reservation_is_named(shop):
    Reservation.objects.filter(order_id=shop.confirmed.pk).update(status="released")

    failed = failures()

    assert failed["confirmed_orders_hold_stock_and_payment"] == [
        f"{named(shop.confirmed)} is confirmed but has no active reservation"
    ]


def test_a_shipped_order_whose_reservation_was_never_committed_is_named(shop):
    Reservation.objects.filter(order_id=shop.shipped.pk).update(status="active")

    failed = failures()

    assert failed["shipped_orders_committed"] == [
        f"{named(shop.shipped)} is shipped but has no committed reservation"
    ]


def test_a_final_order_missing_an_email_is_named_with_the_event(shop):
    # given the delivered order's shipped e-mail was never recorded
    entry = TimelineEntry.objects.get(order_id=shop.delivered.pk, type="order.shipped")
    Notification.objects.filter(event_id=entry.event_id).delete()

    assert failures() == {
        "final_orders_notified": [
            f"{named(shop.delivered)}: order.shipped (event {entry.event_id}) "
            "has no e-mail recorded"
        ]
    }


def test_a_final_order_whose_email_failed_shows_the_error(shop):
    entry = TimelineEntry.objects.get(order_id=shop.declined.pk, type="order.failed")
    Notification.objects.filter(event_id=entry.event_id).update(
        status="failed", error="SMTPServerDisconnected: gone"
    )

    assert failures() == {
        "final_orders_notified": [
            f"{named(shop.declined)}: order.failed (event {entry.event_id}) "
            "has its e-mail failed: SMTPServerDisconnected: gone"
        ]
    }


def test_an_event_pending_past_the_threshold_is_named_with_its_order(shop):
    # given the confirmed order's created event waits on its saga handler for 10 minutes
    d = Delivery.objects.get(
        handler="orders.fulfilment", event__type="order.created",
        aggregate_key=f"order:{shop.confirmed.pk}",
    )  # fmt: skip
    Delivery.objects.filter(pk=d.pk).update(
        status="pending", created_at=timezone.now() - timedelta(minutes=10)
    )

    failed = failures(max_pending_age=300)

    [line] = failed["no_stale_pending_events"]
    assert line.startswith(
        f"delivery #{d.pk} of event #{d.event_id} order.created (order:{shop.confirmed.pk}) "
        "to orders.fulfilment: pending 600s (> 300s)"
    )
    assert "no_stale_pending_events" not in failures(max_pending_age=3600)


def test_a_dead_letter_fails_until_acknowledged_and_again_once_it_dies_again(shop):
    # given
    d = Delivery.objects.filter(handler="notifications.email_customer").first()
    Delivery.objects.filter(pk=d.pk).update(
        status="dead", attempts=8, last_error="SMTPDataError: 554", next_attempt_at=timezone.now()
    )

    # then it is reported
    [line] = failures()["no_unacknowledged_dead_letters"]
    assert line.startswith(f"dead letter #{d.pk}: event #{d.event_id} ")
    assert line.endswith("to notifications.email_customer after 8 attempts; SMTPDataError: 554")

    # when acknowledged it is not
    assert deliveries_acknowledge(ids=[d.pk]) == 1
    assert failures() == {}

    # when requeued, it dies again later: reported again
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=1))
    assert "no_unacknowledged_dead_letters" in failures()


def test_a_saga_past_its_step_lease_is_named_with_its_order(shop):
    # given the confirmed order's saga looks like its worker died mid-charge an hour ago
    saga = saga_of(shop.confirmed)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Saga.objects.filter(pk=saga.pk).update(status="running", current_step=1, wake_at=None)
    SagaStep.objects.filter(saga=saga, index=1).update(
        status="running", lease_expires_at=an_hour_ago
    )

    [line] = failures(saga_lease_grace=60)["no_stuck_sagas"]

    assert line == (
        f"saga {saga.pk} of {named(shop.confirmed)} (running): step charge_payment (running) "
        "lease expired 3600s ago"
    )


def test_a_saga_nobody_woke_is_named(shop):
    saga = saga_of(shop.confirmed)
    Saga.objects.filter(pk=saga.pk).update(
        status="compensating", wake_at=timezone.now() - timedelta(minutes=5)
    )

    [line] = failures(saga_lease_grace=60)["no_stuck_sagas"]

    assert line == (
        f"saga {saga.pk} of {named(shop.confirmed)} (compensating): nobody woke it for 300s "
        "(is the watchdog running?)"
    )


def test_a_failed_compensation_fails_until_an_operator_resolves_it(shop):
    saga = saga_of(shop.cancelled)
    Saga.objects.filter(pk=saga.pk).update(
        status="compensation_failed", last_error="compensating refund_payment: boom"
    )

    assert failures() == {
        "compensation_failures_resolved": [
            f"saga {saga.pk} of {named(shop.cancelled)}: compensating refund_payment: boom"
        ]
    }
    saga_mark_resolved(saga_id=saga.pk, note="refunded by hand in the gateway's dashboard")
    assert failures() == {}


@pytest.mark.parametrize("limit", [0, 1])
def test_a_check_lists_at_most_limit_problems_and_counts_them_all(shop, limit):
    Product.objects.update(reserved=F("reserved") + 1)

    [result] = audit_run(limit=limit).failed

    assert (result.name, result.count, len(result.problems)) == (
        "reserved_matches_reservations",
        2,
        limit,
    )
