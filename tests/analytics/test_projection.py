"""The daily sales projection: counted from events on their UTC day, and rebuilt identically."""

import datetime
import random
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.db.models import Sum

from analytics.models import DailySales
from analytics.services import analytics_rebuild
from inventory.models import Product
from notifications.models import Notification
from orders.events import OrderConfirmed, OrderFailed
from orders.models import Order
from orders.services import LineRequest, order_cancel, order_place
from outbox.models import Delivery, OutboxEvent
from payments.events import PaymentCaptured, PaymentRefunded
from payments.models import Payment
from sagas.models import Saga
from tests.analytics.pump import deliveries_run
from tests.conftest import wait_until
from tests.notifications.factories import event_recorded, order_made
from tests.orders.factories import ADDRESS, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = ("date", "orders_placed", "orders_confirmed", "orders_cancelled", "orders_failed",
          "gross_revenue", "refunds")  # fmt: skip
UTC = datetime.UTC


def projection() -> list[tuple]:
    return list(DailySales.objects.order_by("date").values_list(*FIELDS))


def totals(days: list[tuple]) -> tuple:
    """Each figure summed over the days (the run may cross midnight UTC)."""
    return tuple(sum(day[i] for day in days) for i in range(1, len(FIELDS)))


def occurred(row: OutboxEvent, moment: datetime.datetime) -> None:
    """Backdate an event, as if it had been raised at `moment`."""
    OutboxEvent.objects.filter(pk=row.pk).update(occurred_at=moment)


def test_each_event_counts_on_the_utc_day_it_occurred_whatever_the_local_time_zone(settings):
    # given: events just before and after midnight UTC, some stamped in far-off zones,
    # and a site time zone where every one of them falls on another local day
    settings.OUTBOX_WAKE_ON_COMMIT = False
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14
    order = order_made(status="failed")
    money = {"order_id": order.id, "amount": Decimal("19.90"), "currency": "USD"}
    stamps = [
        (OrderConfirmed(order_id=order.id), datetime.datetime(2026, 3, 1, 23, 59, 59, 999999, UTC)),
        (PaymentCaptured(**money, provider_ref="ch_1"),
         datetime.datetime(2026, 3, 2, 13, 30, tzinfo=ZoneInfo("Pacific/Kiritimati"))),
        (OrderFailed(order_id=order.id, reason="shipping_unavailable"),
         datetime.datetime(2026, 3, 2, 0, 0, tzinfo=UTC)),
        (PaymentRefunded(**money, refund_ref="re_1"),
         datetime.datetime(2026, 3, 1, 14, 0, tzinfo=ZoneInfo("Pacific/Pago_Pago"))),  # UTC-11
    ]  # fmt: skip
    for event, moment in stamps:
        occurred(event_recorded(event), moment)
    expected = [
        (datetime.date(2026, 3, 1), 0, 1, 0, 0, Decimal("19.90"), Decimal("0.00")),
        (datetime.date(2026, 3, 2), 0, 0, 0, 1, Decimal("0.00"), Decimal("19.90")),
    ]
    # when
    deliveries_run()
    # then
    assert projection() == expected
    # when: rebuilt
    analytics_rebuild()
    deliveries_run()
    # then
    assert projection() == expected


def test_rebuild_replays_only_the_projection_and_reports_its_progress(settings):
    # given: two events handled by the projection and the e-mail handler
    settings.OUTBOX_WAKE_ON_COMMIT = False
    order = order_made(status="confirmed")
    event_recorded(OrderConfirmed(order_id=order.id))
    event_recorded(PaymentCaptured(order_id=order.id, amount=order.total, currency="USD",
                                   provider_ref="ch_1"))  # fmt: skip
    deliveries_run()
    before, emails = projection(), Notification.objects.values_list("pk", "sent_at").get()
    progress = []
    # when
    summary = analytics_rebuild(progress=lambda done, total: progress.append((done, total)))
    # then: the projection is empty until the worker side runs the replayed deliveries
    assert (summary.events, summary.reprocessed, summary.skipped) == (2, 2, 0)
    assert progress == [(2, 2)]
    assert projection() == []
    assert deliveries_run() == 2
    assert projection() == before
    assert Notification.objects.values_list("pk", "sent_at").get() == emails
    assert len(mail.outbox) == 1


# --- 500 random orders --------------------------------------------------------------------

PRICES = {"MUG-1": "9.95", "TEA-1": "4.50", "PEN-1": "0.99", "LAMP-1": "149.00",
          "BAG-1": "23.75", "RARE-1": "12.00"}  # fmt: skip
# (payment token, shipping country) with their weights: success, decline, two transient
# failures before success, and a carrier that refuses (payment refunded).
OUTCOMES = [(("tok_visa", "US"), 60), (("tok_chargeDeclined", "US"), 12),
            (("tok_flaky", "US"), 14), (("tok_visa", "AQ"), 14)]  # fmt: skip


def catalog() -> None:
    for sku, price in PRICES.items():
        stock = 12 if sku == "RARE-1" else 100_000  # RARE-1 runs out: insufficient stock
        Product.objects.create(sku=sku, name=sku.title(), price=Decimal(price), on_hand=stock)


def order_random(rng: random.Random, customers: list) -> Order:
    (token, country), *_ = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])
    skus = rng.sample(sorted(PRICES), k=rng.randint(1, 3))
    return order_place(
        customer=rng.choice(customers),
        lines=[LineRequest(sku, rng.randint(1, 3)) for sku in skus],
        payment_token=token,
        shipping_address={**ADDRESS, "country": country},
    )


def cancel_unless_final(order_id) -> bool:
    """Cancel the order unless it is final; whether it had been confirmed.

    The status is read under the order's lock, so a worker confirming it at the
    same moment cannot make the answer wrong.
    """
    with transaction.atomic():
        status = Order.objects.select_for_update().values_list("status", flat=True).get(pk=order_id)
        if status in ("pending", "confirmed"):
            order_cancel(order_id=order_id, reason="changed my mind")
    return status == "confirmed"


def quiet() -> bool:
    """No delivery waiting and no saga moving: every order is final and every event handled."""
    pending = Delivery.objects.filter(status="pending").exists()
    return not pending and not Saga.objects.filter(status__in=Saga.ACTIVE).exists()


def figures_from_orders(confirmed_then_cancelled: int) -> tuple:
    """The projection's totals computed straight from the orders and payments."""
    orders = Order.objects.values_list("status", flat=True)
    paid = Payment.objects.filter(status__in=["captured", "refunded"])
    refunded = Payment.objects.filter(status="refunded")
    return (
        orders.count(),
        orders.filter(status="confirmed").count() + confirmed_then_cancelled,
        orders.filter(status="cancelled").count(),
        orders.filter(status="failed").count(),
        paid.aggregate(s=Sum("amount"))["s"],
        refunded.aggregate(s=Sum("amount"))["s"],
    )


@pytest.mark.timeout(600)  # a minute on an idle machine; several on a busy shared one
def test_projection_of_500_random_orders_matches_the_orders_and_its_rebuild(start_worker):
    # given: 500 orders placed in batches while a real worker runs their sagas and handlers,
    # some cancelled before, during or after their saga
    rng = random.Random(20260301)
    catalog()
    customers = [UserFactory() for _ in range(25)]
    start_worker()
    orders, confirmed_then_cancelled = [], 0
    for _ in range(10):
        orders += [order_random(rng, customers).pk for _ in range(50)]
        confirmed_then_cancelled += sum(cancel_unless_final(pk) for pk in rng.sample(orders, k=8))
    assert wait_until(quiet, timeout=480, interval=0.2)
    assert not Delivery.objects.filter(status="dead").exists()
    # when
    live = projection()
    # then: the projection agrees with the orders and payments
    statuses = set(Order.objects.values_list("status", flat=True))
    assert statuses == {"confirmed", "cancelled", "failed"}
    assert Payment.objects.filter(status="refunded").exists()
    assert totals(live) == figures_from_orders(confirmed_then_cancelled)
    # and every order event got its e-mail
    notices = Notification.objects.filter(status="sent").count()
    assert notices == Order.objects.count() + confirmed_then_cancelled

    # when: rebuilt from the outbox by the worker
    out = StringIO()
    call_command("rebuild_analytics", wait=120, stdout=out)
    # then: field by field the same, and no e-mail handled again
    assert projection() == live
    assert out.getvalue().startswith("analytics reset; ")
    assert out.getvalue().rstrip().endswith("rebuild finished")
    assert Notification.objects.count() == notices
