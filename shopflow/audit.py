"""The invariants ShopFlow keeps once it is quiet, one check each (`manage.py audit`).

Every check only reads, spans whichever contexts it needs, and yields one
readable line per broken case, naming the order (number and id), product,
delivery or saga. A check's query looks at the rows that break it, so a clean
database costs a handful of indexed queries whatever its size.

The gateway's ledger (`SandboxLedgerEntry`) is matched to orders through the
idempotency keys the fulfilment saga gives its calls (`saga:<saga id>:<step>`,
the saga's key being the order id) and through `Payment.idempotency_key`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.models import Product, Reservation
from notifications.handlers import KIND_BY_EVENT
from notifications.models import Notification
from orders.models import FINAL_STATUSES, Order, Status, TimelineEntry
from outbox.models import Delivery
from payments.models import Payment, SandboxLedgerEntry
from sagas.models import Saga, SagaStep
from shipping.models import Shipment

ACTIVE, COMMITTED = Reservation.Status.ACTIVE, Reservation.Status.COMMITTED
CAPTURED = Payment.Status.CAPTURED
CHARGE, REFUND = SandboxLedgerEntry.Kind.CHARGE, SandboxLedgerEntry.Kind.REFUND
SAGA_KEY = re.compile(r"^saga:(?P<saga>[0-9a-fA-F-]{36}):")


@dataclass(frozen=True)
class AuditContext:
    """What the checks share: the clock, the thresholds and the gateway's ledger."""

    now: datetime
    max_pending_age: float  # seconds a delivery may stay pending
    saga_lease_grace: float  # seconds past a lease (or a wake-up) before a saga counts as stuck

    @cached_property
    def ledger(self) -> Ledger:
        """The gateway's ledger, read once per audit."""
        return _ledger()


@dataclass(frozen=True)
class CheckResult:
    """One invariant and the cases that break it (the first `limit` of `count`)."""

    name: str
    description: str
    problems: tuple[str, ...]
    count: int

    @property
    def ok(self) -> bool:
        return self.count == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "description": self.description, "ok": self.ok,
                "count": self.count, "problems": list(self.problems)}  # fmt: skip


@dataclass(frozen=True)
class AuditReport:
    """Every check's result, in a fixed order."""

    checks: tuple[CheckResult, ...]
    failed: tuple[CheckResult, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failed", tuple(c for c in self.checks if not c.ok))

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: `ok`, `total`, `failed` and every check."""
        return {"ok": self.ok, "total": len(self.checks), "failed": len(self.failed),
                "checks": [c.as_dict() for c in self.checks]}  # fmt: skip


Check = Callable[[AuditContext], Iterable[str]]
CHECKS: list[tuple[str, str, Check]] = []


def check(name: str, description: str) -> Callable[[Check], Check]:
    """Register a check; they run in the order they are defined."""

    def register(func: Check) -> Check:
        CHECKS.append((name, description, func))
        return func

    return register


def audit_run(
    *,
    max_pending_age: float | None = None,
    saga_lease_grace: float | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> AuditReport:
    """Run every check; each keeps its first `limit` problems and counts them all."""
    context = AuditContext(
        now=now or timezone.now(),
        max_pending_age=_or_setting(max_pending_age, "AUDIT_MAX_PENDING_SECONDS"),
        saga_lease_grace=_or_setting(saga_lease_grace, "AUDIT_SAGA_GRACE_SECONDS"),
    )
    results = []
    for name, description, func in CHECKS:
        problems = list(func(context))
        results.append(CheckResult(name, description, tuple(problems[:limit]), len(problems)))
    return AuditReport(tuple(results))


def _or_setting(value: float | None, name: str) -> float:
    return float(getattr(settings, name)) if value is None else value


# --- naming what is broken ---------------------------------------------------------------


def _order_labels(order_ids: Iterable[Any]) -> dict[str, str]:
    """`"order SF-… (<id>)"` by order id (as text), for ids that are not orders too."""
    ids = {str(i) for i in order_ids}
    valid = [pk for pk in map(_uuid, ids) if pk is not None]
    numbers = dict(Order.objects.filter(pk__in=valid).values_list("pk", "number"))
    labels = {str(pk): f"order {number} ({pk})" for pk, number in numbers.items()}
    return {i: labels.get(i, f"order {i} (not in the database)") for i in ids}


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _label(order: Order) -> str:
    return f"order {order.number} ({order.pk})"


def _has(model: type, **filters: Any) -> Exists:
    """Whether the order (OuterRef pk) has a row of `model` matching `filters`."""
    return Exists(model.objects.filter(order_id=OuterRef("pk"), **filters))


# --- stock ----------------------------------------------------------------------------


@check(
    "stock_conserved",
    "every product's on_hand = initial stock + restocks - units committed to shipped orders",
)
def stock_conserved(context: AuditContext) -> Iterator[str]:
    committed = Coalesce(
        Sum("reservation_lines__quantity",
            filter=Q(reservation_lines__reservation__status=COMMITTED)),
        0,
    )  # fmt: skip
    products = (
        Product.objects.annotate(committed=committed)
        .annotate(expected=F("initial_stock") + F("restocked_total") - F("committed"))
        .exclude(on_hand=F("expected"))
        .order_by("sku")
    )
    for p in products:
        yield (
            f"product {p.sku}: on_hand {p.on_hand}, expected {p.expected} (initial "
            f"{p.initial_stock} + restocked {p.restocked_total} - committed {p.committed})"
        )


@check("reserved_matches_reservations", "every product's reserved = its active reservation lines")
def reserved_matches_reservations(context: AuditContext) -> Iterator[str]:
    held = Coalesce(
        Sum("reservation_lines__quantity", filter=Q(reservation_lines__reservation__status=ACTIVE)),
        0,
    )
    products = Product.objects.annotate(held=held).exclude(reserved=F("held")).order_by("sku")
    for p in products:
        yield f"product {p.sku}: reserved {p.reserved}, active reservation lines hold {p.held}"


# --- money, from the gateway's own ledger ------------------------------------------------


@dataclass
class LedgerCharge:
    reference: str
    amount: Decimal
    order_id: str | None
    refunded: Decimal = Decimal("0")


@dataclass(frozen=True)
class Ledger:
    charges: dict[str, LedgerCharge]  # by reference
    orphan_refunds: list[SandboxLedgerEntry]  # refunds naming no known charge

    def by_order(self) -> dict[str, list[LedgerCharge]]:
        """The charges of each order the ledger can be matched to."""
        by_order: dict[str, list[LedgerCharge]] = defaultdict(list)
        for charge in self.charges.values():
            if charge.order_id is not None:
                by_order[charge.order_id].append(charge)
        return by_order


def _ledger() -> Ledger:
    """Every charge with its order and refunded total."""
    entries = list(SandboxLedgerEntry.objects.order_by("id"))
    order_of_key = _orders_of_keys({e.idempotency_key for e in entries if e.kind == CHARGE})
    charges = {
        e.reference: LedgerCharge(e.reference, e.amount, order_of_key.get(e.idempotency_key))
        for e in entries
        if e.kind == CHARGE
    }
    orphans = []
    for refund in (e for e in entries if e.kind == REFUND):
        if refund.charge_reference in charges:
            charges[refund.charge_reference].refunded += refund.amount
        else:
            orphans.append(refund)
    return Ledger(charges, orphans)


def _orders_of_keys(keys: set[str]) -> dict[str, str]:
    """The order each idempotency key was used for, by its payment or its saga."""
    found = {
        key: str(order_id)
        for key, order_id in Payment.objects.filter(idempotency_key__in=keys).values_list(
            "idempotency_key", "order_id"
        )
    }
    saga_of_key = {k: m["saga"] for k in keys - found.keys() if (m := SAGA_KEY.match(k))}
    order_of_saga = {
        str(pk): key
        for pk, key in Saga.objects.filter(pk__in=set(saga_of_key.values())).values_list(
            "pk", "key"
        )
    }
    for key, saga in saga_of_key.items():
        if saga.lower() in order_of_saga:
            found[key] = order_of_saga[saga.lower()]
    return found


@check("one_charge_per_order", "no order was charged more than once in the gateway's ledger")
def one_charge_per_order(context: AuditContext) -> Iterator[str]:
    twice = {o: cs for o, cs in context.ledger.by_order().items() if len(cs) > 1}
    labels = _order_labels(twice)
    for order_id, cs in sorted(twice.items()):
        refs = ", ".join(f"{c.reference} ({c.amount})" for c in cs)
        yield f"{labels[order_id]}: {len(cs)} charges in the gateway's ledger: {refs}"


@check("refunds_within_charges", "no charge was refunded more than it took")
def refunds_within_charges(context: AuditContext) -> Iterator[str]:
    over = [c for c in context.ledger.charges.values() if c.refunded > c.amount]
    labels = _order_labels(c.order_id for c in over if c.order_id)
    for c in over:
        whose = labels[c.order_id] if c.order_id else "no known order"
        yield f"charge {c.reference} ({whose}): refunded {c.refunded} of {c.amount}"
    for refund in context.ledger.orphan_refunds:
        yield (
            f"refund {refund.reference} ({refund.amount}) names charge "
            f"{refund.charge_reference or '-'}, which is not in the ledger"
        )


# --- orders ----------------------------------------------------------------------------


@check(
    "failed_and_cancelled_orders_hold_nothing",
    "a failed or cancelled order holds no reserved stock, no captured or unrefunded payment "
    "and no shipment that is not cancelled",
)
def failed_and_cancelled_orders_hold_nothing(context: AuditContext) -> Iterator[str]:
    called_off = Order.objects.filter(status__in=[Status.FAILED, Status.CANCELLED])
    orders = called_off.annotate(
        stock=_has(Reservation, status=ACTIVE),
        payment=_has(Payment, status=CAPTURED),
        shipment=Exists(
            Shipment.objects.filter(order_id=OuterRef("pk")).exclude(
                status=Shipment.Status.CANCELLED
            )
        ),
    ).filter(Q(stock=True) | Q(payment=True) | Q(shipment=True))
    what = {"stock": "reserved stock (active reservation)", "payment": "a captured payment",
            "shipment": "a shipment that is not cancelled"}  # fmt: skip
    for order in orders.order_by("created_at"):
        held = [text for name, text in what.items() if getattr(order, name)]
        yield f"{_label(order)} is {order.status} but holds {', '.join(held)}"
    yield from _unrefunded(called_off, context.ledger)


def _unrefunded(orders: Any, ledger: Ledger) -> Iterator[str]:
    by_order = ledger.by_order()
    statuses = {str(pk): s for pk, s in orders.values_list("pk", "status")}
    kept = {
        order_id: sum((c.amount - c.refunded for c in cs), Decimal("0"))
        for order_id, cs in by_order.items()
        if order_id in statuses
    }
    kept = {order_id: amount for order_id, amount in kept.items() if amount > 0}
    labels = _order_labels(kept)
    for order_id, amount in sorted(kept.items()):
        yield (
            f"{labels[order_id]} is {statuses[order_id]} but the gateway's ledger keeps "
            f"{amount} of its charges unrefunded"
        )


@check(
    "confirmed_orders_hold_stock_and_payment",
    "a confirmed order has its stock reserved, its payment captured and its shipment scheduled",
)
def confirmed_orders_hold_stock_and_payment(context: AuditContext) -> Iterator[str]:
    orders = (
        Order.objects.filter(status=Status.CONFIRMED)
        .annotate(
            stock=_has(Reservation, status=ACTIVE),
            payment=_has(Payment, status=CAPTURED),
            shipment=_has(Shipment, status=Shipment.Status.SCHEDULED),
        )
        .exclude(stock=True, payment=True, shipment=True)
    )
    what = {"stock": "no active reservation", "payment": "no captured payment",
            "shipment": "no scheduled shipment"}  # fmt: skip
    for order in orders.order_by("created_at"):
        missing = [text for name, text in what.items() if not getattr(order, name)]
        yield f"{_label(order)} is confirmed but has {', '.join(missing)}"


@check(
    "shipped_orders_committed",
    "a shipped or delivered order has its reservation committed and its payment captured",
)
def shipped_orders_committed(context: AuditContext) -> Iterator[str]:
    orders = (
        Order.objects.filter(status__in=[Status.SHIPPED, Status.DELIVERED])
        .annotate(stock=_has(Reservation, status=COMMITTED), payment=_has(Payment, status=CAPTURED))
        .exclude(stock=True, payment=True)
    )
    what = {"stock": "no committed reservation", "payment": "no captured payment"}
    for order in orders.order_by("created_at"):
        missing = [text for name, text in what.items() if not getattr(order, name)]
        yield f"{_label(order)} is {order.status} but has {', '.join(missing)}"


@check(
    "final_orders_notified",
    "every event of a final order that calls for an e-mail has one sent (or skipped: no address)",
)
def final_orders_notified(context: AuditContext) -> Iterator[str]:
    notification = Notification.objects.filter(event_id=OuterRef("event_id"))
    done = notification.filter(status__in=[Notification.Status.SENT, Notification.Status.SKIPPED])
    entries = (
        TimelineEntry.objects.filter(
            type__in=list(KIND_BY_EVENT),
            order_id__in=Order.objects.filter(status__in=FINAL_STATUSES).values("pk"),
        )
        .annotate(
            notified=Exists(done),
            state=Subquery(notification.values("status")[:1]),
            error=Subquery(notification.values("error")[:1]),
        )
        .filter(notified=False)
        .order_by("order_id", "occurred_at", "id")
    )
    entries = list(entries)
    labels = _order_labels(e.order_id for e in entries)
    for e in entries:
        state = f"its e-mail {e.state}: {e.error[:120]}" if e.state else "no e-mail recorded"
        yield f"{labels[str(e.order_id)]}: {e.type} (event {e.event_id}) has {state}"


# --- the machinery: outbox and sagas ----------------------------------------------------


@check("no_stale_pending_events", "no delivery has been pending longer than the threshold")
def no_stale_pending_events(context: AuditContext) -> Iterator[str]:
    cutoff = context.now - timedelta(seconds=context.max_pending_age)
    stale = Delivery.objects.filter(status=Delivery.Status.PENDING, created_at__lt=cutoff)
    for d in stale.select_related("event").order_by("id"):
        age = (context.now - d.created_at).total_seconds()
        error = f"; last error: {d.last_error.splitlines()[0][:120]}" if d.last_error else ""
        yield (
            f"delivery #{d.pk} of event #{d.event.pk} {d.event.type} ({d.aggregate_key}) "
            f"to {d.handler}: pending {age:.0f}s (> {context.max_pending_age:g}s), "
            f"{d.attempts} attempts{error}"
        )


@check("no_unacknowledged_dead_letters", "every dead letter has been acknowledged by an operator")
def no_unacknowledged_dead_letters(context: AuditContext) -> Iterator[str]:
    # A dead letter's `next_attempt_at` is when it died: an older acknowledgement is stale.
    dead = Delivery.objects.filter(status=Delivery.Status.DEAD).filter(
        Q(acknowledged_at__isnull=True) | Q(acknowledged_at__lt=F("next_attempt_at"))
    )
    for d in dead.select_related("event").order_by("id"):
        error = d.last_error.splitlines()[0][:120] if d.last_error else "no error recorded"
        yield (
            f"dead letter #{d.pk}: event #{d.event.pk} {d.event.type} ({d.aggregate_key}) "
            f"to {d.handler} after {d.attempts} attempts; {error}"
        )


@check(
    "no_stuck_sagas",
    "no active saga is past its step's lease, or its wake-up, by more than the grace period",
)
def no_stuck_sagas(context: AuditContext) -> Iterator[str]:
    overdue = context.now - timedelta(seconds=context.saga_lease_grace)
    steps = SagaStep.objects.filter(
        saga__status__in=Saga.ACTIVE,
        status__in=[SagaStep.Status.RUNNING, SagaStep.Status.COMPENSATING],
        lease_expires_at__lt=overdue,
    ).select_related("saga")
    asleep = Saga.objects.filter(status__in=Saga.ACTIVE, wake_at__lt=overdue)
    lines = {}
    for step in steps:
        late = (context.now - step.lease_expires_at).total_seconds()
        lines[step.saga] = f"step {step.name} ({step.status}) lease expired {late:.0f}s ago"
    for saga in asleep.exclude(pk__in=[s.pk for s in lines]):
        late = (context.now - saga.wake_at).total_seconds()
        lines[saga] = f"nobody woke it for {late:.0f}s (is the watchdog running?)"
    labels = _order_labels(saga.key for saga in lines)
    for saga, line in sorted(lines.items(), key=lambda item: item[0].created_at):
        yield f"saga {saga.pk} of {labels[saga.key]} ({saga.status}): {line}"


@check(
    "compensation_failures_resolved",
    "every saga whose compensation failed has been resolved by an operator",
)
def compensation_failures_resolved(context: AuditContext) -> Iterator[str]:
    sagas = Saga.objects.filter(status=Saga.Status.COMPENSATION_FAILED, resolved_at__isnull=True)
    sagas = list(sagas.order_by("created_at"))
    labels = _order_labels(s.key for s in sagas)
    for saga in sagas:
        error = saga.last_error.splitlines()[0][:160] if saga.last_error else "no error recorded"
        yield f"saga {saga.pk} of {labels[saga.key]}: {error}"
