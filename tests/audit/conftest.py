"""A small shop run to quiet in the test process: every outcome an order can have, audited.

The outbox and the saga engine run synchronously here (claim, process, advance),
with every handler subscribed, so orders end with their reservations, payments,
shipments, ledger entries and e-mails exactly as workers would leave them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from inventory.services import product_create, product_restock
from orders.models import Order
from orders.services import LineRequest, order_cancel, order_place
from outbox import delivery, relay
from outbox.models import Delivery
from sagas import engine, tasks
from sagas.models import Saga
from shipping.models import Shipment
from shipping.services import shipment_advance


def address(country: str = "US") -> dict[str, str]:
    return {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345",
            "country": country}  # fmt: skip


class InProcessShop:
    """The relay, the workers and the saga watchdog, one step at a time in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.advances: deque[str] = deque()
        monkeypatch.setattr(tasks.advance_saga, "apply_async", self._queue_advance)
        monkeypatch.setattr(relay, "relay_wake", lambda: None)
        # Commits publish nothing either: deliveries wait, unleased, for this harness's claims.
        monkeypatch.setattr(settings, "OUTBOX_DISPATCH_ON_COMMIT", False)
        monkeypatch.setattr(relay, "successors_relay", lambda keys: 0)
        self.customer = get_user_model().objects.create_user("ada", "ada@example.com", "pw-123456!")

    def _queue_advance(self, args: tuple = (), kwargs: dict | None = None, **options: Any) -> None:
        self.advances.append(args[0])

    def place(self, quantities: dict[str, int], token: str = "tok_visa", country: str = "US"):
        return order_place(
            customer=self.customer,
            lines=[LineRequest(sku, qty) for sku, qty in quantities.items()],
            payment_token=token,
            shipping_address=address(country),
        )

    def step(self) -> bool:
        """Process one batch of due deliveries, else one saga move; whether anything ran."""
        lease_id, rows = relay.deliveries_claim(100)
        if rows:
            delivery.deliveries_process(lease_id, [pk for pk, _ in rows])
            return True
        if self.advances:
            engine.saga_advance(UUID(self.advances.popleft()))
            return True
        return False

    def run_until_quiet(self, rounds: int = 5000) -> None:
        for _ in range(rounds):
            if self.step():
                continue
            pending = Delivery.objects.filter(status=Delivery.Status.PENDING).exists()
            if not pending and not Saga.objects.filter(status__in=Saga.ACTIVE).exists():
                return
            tasks.saga_watchdog()
            if not self.advances:
                time.sleep(0.005)  # a lease or a backoff of milliseconds runs out
        raise AssertionError("the shop did not go quiet")

    def ship(self, order: Order, *, deliver: bool = False) -> None:
        """The carrier picks the order's parcel up (and delivers it)."""
        tracking = Shipment.objects.get(order_id=order.pk).tracking_number
        shipment_advance(tracking_number=tracking, status="shipped")
        if deliver:
            shipment_advance(tracking_number=tracking, status="delivered")
        self.run_until_quiet()


@dataclass
class Shop:
    """The quiet shop's orders, one per outcome."""

    driver: InProcessShop
    confirmed: Order
    shipped: Order
    delivered: Order
    declined: Order
    unshippable: Order
    out_of_stock: Order
    cancelled: Order

    def reloaded(self, name: str) -> Order:
        return Order.objects.get(pk=getattr(self, name).pk)


FAST = {
    "SAGA_STEP_LEASE_SECONDS": 0.02,
    "SAGA_BACKOFF_BASE": 0.0,
    "SAGA_BACKOFF_MAX": 0.0,
    "SAGA_WAKE_GRACE_SECONDS": 0.0,
    "OUTBOX_BACKOFF_BASE": 0.0,
    "OUTBOX_BACKOFF_MAX": 0.0,
}


@pytest.fixture(scope="module")
def shop(django_db_setup: None, django_db_blocker: Any) -> Iterator[Shop]:
    """A quiet shop whose orders ended in every way an order can end, committed once per module.

    Tests break it inside their own transaction (the `db` fixture's), which is
    rolled back, so each one starts from the same quiet shop.
    """
    with django_db_blocker.unblock():
        with pytest.MonkeyPatch.context() as monkeypatch, override_settings(**FAST):
            shop = _shop_built(InProcessShop(monkeypatch))
        yield shop
        call_command("flush", interactive=False, verbosity=0)


def _shop_built(driver: InProcessShop) -> Shop:
    product_create(sku="MUG-1", name="Mug", price=Decimal("9.95"), stock=20)
    product_create(sku="TEA-1", name="Tea", price=Decimal("4.50"), stock=2)
    product_restock(sku="TEA-1", quantity=3)
    orders = {
        "confirmed": driver.place({"MUG-1": 1, "TEA-1": 1}),
        "shipped": driver.place({"MUG-1": 2}),
        "delivered": driver.place({"MUG-1": 1, "TEA-1": 2}),
        "declined": driver.place({"MUG-1": 1}, token="tok_chargeDeclined"),
        "unshippable": driver.place({"MUG-1": 1}, country="AQ"),
        "out_of_stock": driver.place({"TEA-1": 50}),
        "cancelled": driver.place({"MUG-1": 3}, token="tok_refundFlaky"),
    }
    driver.run_until_quiet()
    driver.ship(orders["shipped"])
    driver.ship(orders["delivered"], deliver=True)
    order_cancel(order_id=orders["cancelled"].pk, reason="changed my mind")
    driver.run_until_quiet()
    return Shop(driver=driver, **orders)
