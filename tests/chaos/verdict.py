"""What the chaos run left behind, read from the database once the shop is quiet.

Three counts, each made of readable lines: *lost* (an order a client got a 201
for is missing, or a request never got a final answer), *duplicated* (two orders
for one Idempotency-Key, an order charged twice, a charge refunded beyond what
it took, an e-mail sent twice) and *inconsistent* (an audit failure, an order
not final, an e-mail missing, an order that ended otherwise than its scenario).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import OperationalError, connection
from django.db.models import Count
from django.utils import timezone

from notifications.handlers import KIND_BY_EVENT
from notifications.models import Notification
from orders.models import Order, Status, TimelineEntry
from outbox.models import Delivery
from payments.models import SandboxLedgerEntry
from sagas.models import Saga
from shopflow.audit import audit_run
from tests.chaos.clients import Placement

# The saga is over in these; shipped and delivered would come from the carrier later.
SETTLED = (Status.CONFIRMED, Status.FAILED, Status.CANCELLED)
SAGA_KEY = re.compile(r"^saga:(?P<saga>[0-9a-f-]{36}):")
CANCEL_ANSWERS = frozenset({"200", "202", "409"})


def orders_unsettled() -> int | None:
    """How many orders are still pending, or None while the database does not answer."""
    try:
        return Order.objects.filter(status=Status.PENDING).count()
    except OperationalError:
        connection.close()  # the next call reconnects
        return None


def unfinished() -> dict[str, int]:
    """What still moves: orders not settled, active sagas, deliveries not done."""
    return {
        "orders not final": Order.objects.exclude(status__in=SETTLED).count(),
        "active sagas": Saga.objects.filter(status__in=Saga.ACTIVE).count(),
        "pending deliveries": Delivery.objects.filter(status=Delivery.Status.PENDING).count(),
    }


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    stuck: list[str] = field(default_factory=list)  # what holds up unfinished orders


def verdict_of(placements: list[Placement]) -> Verdict:
    """Check every placement against the database, the gateway's ledger, e-mails and the audit."""
    verdict = Verdict(stuck=stuck())
    orders = {str(o.pk): o for o in Order.objects.all()}
    _clients_heard(placements, orders, verdict)
    _ledger_checked(verdict)
    _emails_checked(verdict)
    for name, count in unfinished().items():
        if count:
            verdict.inconsistent.append(f"{count} {name}")
    for check in audit_run(limit=10).failed:
        verdict.inconsistent += [f"audit {check.name}: {line}" for line in check.problems]
        if check.count > len(check.problems):
            verdict.inconsistent.append(f"audit {check.name}: {check.count} in all")
    return verdict


def _clients_heard(placements: list[Placement], orders: dict[str, Order], verdict: Verdict) -> None:
    named: set[str] = set()
    for p in placements:
        label = f"order #{p.planned.index} ({p.planned.scenario.name}, key {p.planned.key})"
        named |= p.order_ids
        if len(p.order_ids) > 1:
            verdict.duplicated.append(f"{label}: its 201s named {sorted(p.order_ids)}")
        if p.answer != "201":
            verdict.lost.append(f"{label}: no 201, last answer {p.answer} after {p.tries} tries")
            continue
        order = orders.get(p.order_id or "")
        if order is None:
            verdict.lost.append(f"{label}: 201 for {p.order_ids}, not in the database")
            continue
        if p.planned.cancel_after is not None and p.cancel_answer not in CANCEL_ANSWERS:
            verdict.lost.append(f"{label}: its cancellation got {p.cancel_answer or 'nothing'}")
        _outcome_checked(label, p, order, verdict)
    for order_id in orders.keys() - named:
        verdict.duplicated.append(f"order {order_id}: in the database, no client was told of it")


def _outcome_checked(label: str, p: Placement, order: Order, verdict: Verdict) -> None:
    scenario = p.planned.scenario
    verdict.outcomes[f"{order.status} {order.failure_reason}".strip()] += 1
    if (order.status, order.failure_reason) != (scenario.status, scenario.reason):
        verdict.inconsistent.append(
            f"{label}: {order.status} {order.failure_reason or ''}, expected "
            f"{scenario.status} {scenario.reason}".rstrip()
        )


def _ledger_checked(verdict: Verdict) -> None:
    """At most one charge per order; no charge refunded beyond what it took."""
    order_of_saga = {str(pk): key for pk, key in Saga.objects.values_list("pk", "key")}
    charges: dict[str, list[SandboxLedgerEntry]] = defaultdict(list)
    refunded: Counter[str] = Counter()
    entries = list(SandboxLedgerEntry.objects.all())
    for entry in entries:
        if entry.kind == SandboxLedgerEntry.Kind.REFUND:
            refunded[entry.charge_reference] += entry.amount
            continue
        match = SAGA_KEY.match(entry.idempotency_key)
        order_id = order_of_saga.get(match["saga"], "?") if match else "?"
        charges[order_id].append(entry)
    for order_id, taken in charges.items():
        if len(taken) > 1:
            refs = ", ".join(e.reference for e in taken)
            verdict.duplicated.append(f"order {order_id}: charged {len(taken)} times ({refs})")
    for charge in (e for e in entries if e.kind == SandboxLedgerEntry.Kind.CHARGE):
        if refunded[charge.reference] > charge.amount:
            verdict.duplicated.append(
                f"charge {charge.reference}: refunded {refunded[charge.reference]} "
                f"of {charge.amount}"
            )
    known = {e.reference for e in entries if e.kind == SandboxLedgerEntry.Kind.CHARGE}
    for reference in refunded.keys() - known:
        verdict.duplicated.append(f"refund of unknown charge {reference}: {refunded[reference]}")


def _emails_checked(verdict: Verdict) -> None:
    """Each (order, event) that calls for an e-mail has exactly one sent Notification."""
    sent = Notification.objects.filter(status=Notification.Status.SENT)
    twice = sent.values("order_id", "kind").annotate(n=Count("id")).filter(n__gt=1)
    for row in twice:
        verdict.duplicated.append(f"order {row['order_id']}: {row['n']} {row['kind']} e-mails")
    sent_for = set(sent.values_list("event_id", "kind"))
    for entry in TimelineEntry.objects.filter(type__in=list(KIND_BY_EVENT)):
        if (entry.event_id, KIND_BY_EVENT[entry.type]) not in sent_for:
            verdict.inconsistent.append(
                f"order {entry.order_id}: {entry.type} (event {entry.event_id}) has no sent e-mail"
            )


def stuck(limit: int = 10) -> list[str]:
    """What holds up the orders still moving: their sagas' steps and pending deliveries."""
    lines = []
    now = timezone.now()
    for order in Order.objects.exclude(status__in=SETTLED).order_by("created_at")[:limit]:
        lines.append(
            f"stuck order {order.pk} ({order.status}, created {_ago(order.created_at, now)})"
        )
        for saga in Saga.objects.filter(key=str(order.pk)):
            lines.append(
                f"  saga {saga.pk} {saga.status} step {saga.current_step} "
                f"cancel_requested={saga.cancel_requested} wake_at {_ago(saga.wake_at, now)}"
            )
            lines += [
                f"    step {s.index} {s.name} {s.status} attempts {s.attempts}/"
                f"{s.compensation_attempts} lease {_ago(s.lease_expires_at, now)} "
                f"next {_ago(s.next_attempt_at, now)} {s.last_error[:120]!r}"
                for s in saga.steps.order_by("index")
            ]
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).select_related("event")
    for d in pending.order_by("id")[:limit]:
        lines.append(
            f"stuck delivery #{d.pk} {d.event.type} {d.aggregate_key} to {d.handler}: attempts "
            f"{d.attempts}, lease {_ago(d.lease_expires_at, now)}, next "
            f"{_ago(d.next_attempt_at, now)}, created {_ago(d.created_at, now)} "
            f"{d.last_error[:120]!r}"
        )
    return lines


def _ago(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else f"{(moment - now).total_seconds():+.1f}s"
