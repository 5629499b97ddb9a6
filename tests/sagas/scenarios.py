"""Driving the fulfilment saga in tests, and reading what it did to stock, money and parcels."""

from __future__ import annotations

import time
import uuid
from collections import deque
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from inventory.models import Reservation
from orders.fulfilment import FULFILMENT
from orders.models import Order
from orders.selectors import order_timeline
from orders.services import LineRequest, order_place
from outbox import delivery, relay
from outbox.models import Delivery
from payments.models import Payment, SandboxLedgerEntry
from sagas import engine, tasks
from sagas.models import Saga
from shipping.models import Shipment
from tests.conftest import wait_until

HANDLER = "orders.fulfilment"


def address(country: str = "US") -> dict[str, str]:
    return {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345",
            "country": country}  # fmt: skip


def place(
    sku: str = "MUG-1", quantity: int = 2, token: str = "tok_visa", country: str = "US"
) -> Order:
    """A pending order placed through the service; the saga starts when its event is handled."""
    customer = get_user_model().objects.get_or_create(username="ada")[0]
    return order_place(
        customer=customer,
        lines=[LineRequest(sku, quantity)],
        payment_token=token,
        shipping_address=address(country),
    )


def stalled_attempt(
    in_process: InProcessSaga, steps_before: int, token: str = "tok_visa"
) -> tuple[Order, Saga, engine.Move]:
    """An order whose first `steps_before` steps are done and whose next attempt is claimed,
    then stalled past its lease (0.02 s in process): attempt 1, which goes on later."""
    order = place(token=token)
    in_process.deliver()
    saga = saga_of(order)
    if steps_before:
        engine.saga_advance(saga.pk, moves=steps_before)
    in_process.advances.clear()
    stalled = engine._claim(saga.pk)
    assert (stalled.step_index, stalled.attempt) == (steps_before, 1)
    time.sleep(0.05)
    return order, saga, stalled


def reloaded(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def saga_of(order: Order) -> Saga | None:
    return Saga.objects.filter(definition=FULFILMENT, key=str(order.pk)).first()


def timeline(order: Order) -> list[str]:
    """The order's timeline entry types, oldest first."""
    return [entry.type for entry in order_timeline(order_id=order.pk)]


def settled(order: Order) -> bool:
    """Whether the order's saga has nothing left to do (and the order is past pending)."""
    # Read in causal order: a delivery handled after the saga was read could restart it.
    if Delivery.objects.filter(
        handler=HANDLER, aggregate_key=f"order:{order.pk}", status="pending"
    ).exists():
        return False
    saga = saga_of(order)
    return (
        saga is not None and saga.status not in Saga.ACTIVE and reloaded(order).status != "pending"
    )


def quiet() -> bool:
    """No saga-handler delivery waiting and no saga active (read in that order, as above)."""
    if Delivery.objects.filter(handler=HANDLER, status="pending").exists():
        return False
    return not Saga.objects.filter(status__in=Saga.ACTIVE).exists()


def wait_settled(order: Order, timeout: float = 40) -> Order:
    """Wait until the order's saga is done; the order as it then is."""
    assert wait_until(lambda: settled(order), timeout=timeout, interval=0.1), describe(order)
    return reloaded(order)


def describe(order: Order) -> str:
    saga = saga_of(order)
    steps = (
        [(s.name, s.status, s.attempts, s.last_error[:80]) for s in saga.steps.all()]
        if saga
        else []
    )
    return (
        f"order {reloaded(order).status}, saga {saga and saga.status} {steps}, "
        f"timeline {timeline(order)}"
    )


def ledger_charges(order: Order) -> list[SandboxLedgerEntry]:
    """Every charge the sandbox gateway made for the order, whatever key it was made with."""
    saga = saga_of(order)
    keys = Payment.objects.filter(order_id=order.pk).values("idempotency_key")
    made_for_order = Q(idempotency_key__in=keys)
    if saga is not None:
        made_for_order |= Q(idempotency_key__startswith=f"saga:{saga.pk}:")
    return list(SandboxLedgerEntry.objects.filter(made_for_order, kind="charge"))


def net_money(order: Order) -> Decimal:
    """What the gateway's ledger says the customer paid for the order, net of refunds."""
    refs = [charge.reference for charge in ledger_charges(order)]
    charged = sum((charge.amount for charge in ledger_charges(order)), Decimal("0"))
    refunded = SandboxLedgerEntry.objects.filter(
        kind="refund", charge_reference__in=refs
    ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return charged - refunded


def assert_final_state_is_consistent(order: Order) -> None:
    """CONTRACT §2: what stock, money and the parcel look like once the order is final and quiet."""
    order = reloaded(order)
    reservation = Reservation.objects.filter(order_id=order.pk).first()
    payment = Payment.objects.filter(order_id=order.pk).first()
    shipment = Shipment.objects.filter(order_id=order.pk).first()
    charges = ledger_charges(order)
    assert len(charges) <= 1, f"charged {len(charges)} times: {charges}"
    if order.status in ("cancelled", "failed"):
        assert reservation is None or reservation.status == "released", describe(order)
        assert payment is None or payment.status != "captured", describe(order)
        assert net_money(order) == 0, describe(order)
        assert shipment is None or shipment.status == "cancelled", describe(order)
    else:
        assert order.status == "confirmed", describe(order)
        assert reservation.status == "active"
        assert payment.status == "captured" and payment.provider_ref == charges[0].reference
        assert net_money(order) == order.total
        assert shipment.status == "scheduled"


def assert_undone_after_done(types: list[str]) -> None:
    """Each effect the timeline shows was undone, after it was done."""
    pairs = {
        "inventory.reserved": "inventory.released",
        "payment.captured": "payment.refunded",
        "shipment.scheduled": "shipment.cancelled",
    }
    for done, undone in pairs.items():
        assert types.count(done) == types.count(undone) <= 1, types
        if done in types:
            assert types.index(done) < types.index(undone), types


class InProcessSaga:
    """Runs the saga machinery synchronously in the test process: no broker, no worker.

    Advances the engine would send to Celery are queued here instead, and the
    outbox is drained by claiming and processing the saga handler's deliveries
    directly, so a test decides exactly what runs when (twice, or not at all).
    """

    def __init__(self, monkeypatch: Any) -> None:
        self.advances: deque[str] = deque()
        monkeypatch.setattr(tasks.advance_saga, "apply_async", self._queue_advance)
        monkeypatch.setattr(relay, "relay_wake", lambda: None)
        # Commits publish nothing either: deliveries wait, unleased, for this harness's claims.
        monkeypatch.setattr(settings, "OUTBOX_DISPATCH_ON_COMMIT", False)
        monkeypatch.setattr(relay, "successors_relay", lambda keys: 0)

    def _queue_advance(self, args: tuple = (), kwargs: dict | None = None, **options: Any) -> None:
        self.advances.append(args[0])

    def deliver(self, times: int = 1) -> int:
        """Process every due saga-handler delivery (each claim `times` times); how many."""
        lease_id, ids = self._claim_deliveries()
        for _ in range(times):
            delivery.deliveries_process(lease_id, ids)
        return len(ids)

    def _claim_deliveries(self) -> tuple[str, list[int]]:
        """The relay's claim, for the saga handler only: other apps' handlers are not under test."""
        lease_id, now = uuid.uuid4(), timezone.now()
        earlier_unfinished = Delivery.objects.filter(
            handler=HANDLER, aggregate_key=OuterRef("aggregate_key"), id__lt=OuterRef("id")
        ).exclude(status="done")
        due = (
            Delivery.objects.filter(handler=HANDLER, status="pending", next_attempt_at__lte=now)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .filter(~Exists(earlier_unfinished))
            .order_by("id")
        )
        with transaction.atomic():
            ids = list(due.select_for_update(skip_locked=True).values_list("id", flat=True)[:100])
            Delivery.objects.filter(id__in=ids).update(
                lease_id=lease_id,
                lease_expires_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            )
        return str(lease_id), ids

    def advance(self, times: int = 1) -> bool:
        """Run the oldest queued advance `times` times; whether there was one."""
        if not self.advances:
            return False
        saga_id = self.advances.popleft()
        for _ in range(times):
            self.run_advance(saga_id)
        return True

    def run_advance(self, saga_id: str) -> None:
        """What the `sagas.advance` task does, here and now."""
        engine.saga_advance(UUID(saga_id))

    def step(self, times: int = 1) -> bool:
        """One unit of work: a batch of deliveries, else one advance; whether anything ran."""
        return bool(self.deliver(times)) or self.advance(times)

    def run_until_quiet(self, rounds: int = 2000) -> None:
        """Work until nothing is left; expired leases come back through the watchdog."""
        for _ in range(rounds):
            if self.step():
                continue
            if quiet():
                return
            tasks.saga_watchdog()  # queues an advance for every saga due by its wake_at
            if not self.advances:
                time.sleep(0.01)  # a lease or backoff of a few milliseconds runs out
        raise AssertionError("the saga machinery did not go quiet")
