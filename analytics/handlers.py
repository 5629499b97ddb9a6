"""Project order and payment events onto daily sales (replayable: a projection)."""

from __future__ import annotations

from analytics.services import daily_sales_add
from orders.events import OrderCancelled, OrderConfirmed, OrderCreated, OrderFailed
from outbox.events import DomainEvent
from outbox.registry import EventContext, subscribe
from payments.events import PaymentCaptured, PaymentRefunded

HANDLER_NAME = "analytics.daily_sales"

COUNTER_BY_EVENT = {
    OrderCreated.name: "orders_placed",
    OrderConfirmed.name: "orders_confirmed",
    OrderCancelled.name: "orders_cancelled",
    OrderFailed.name: "orders_failed",
}


@subscribe(
    OrderCreated, OrderConfirmed, OrderCancelled, OrderFailed, PaymentCaptured, PaymentRefunded,
    name=HANDLER_NAME, replayable=True, batch=True,
)  # fmt: skip
def project_daily_sales(event: DomainEvent, context: EventContext) -> None:
    """Count the event on the day it occurred; money comes from the payment events.

    Batched: each event is one upsert in the delivery's transaction, right however
    many share it, and a rebuild's table lock waits for (or holds off) a whole
    batch (`analytics.services._projection_lock`).
    """
    day = context.occurred_at.date()
    if isinstance(event, PaymentCaptured):
        daily_sales_add(day=day, field="gross_revenue", amount=event.amount)
    elif isinstance(event, PaymentRefunded):
        daily_sales_add(day=day, field="refunds", amount=event.amount)
    else:
        daily_sales_add(day=day, field=COUNTER_BY_EVENT[context.event_type])
