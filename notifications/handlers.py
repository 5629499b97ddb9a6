"""E-mail the customer when their order is confirmed, shipped, delivered, cancelled or failed."""

from __future__ import annotations

from notifications.services import notification_record_failure, notification_send
from orders.events import OrderCancelled, OrderConfirmed, OrderDelivered, OrderFailed, OrderShipped
from outbox.events import DomainEvent
from outbox.registry import EventContext, subscribe

KIND_BY_EVENT = {
    OrderConfirmed.name: "confirmed",
    OrderShipped.name: "shipped",
    OrderDelivered.name: "delivered",
    OrderCancelled.name: "cancelled",
    OrderFailed.name: "failed",
}


def _record_failure(
    event: DomainEvent, context: EventContext, exc: BaseException, dead: bool
) -> None:
    notification_record_failure(
        event_id=context.event_id,
        kind=KIND_BY_EVENT[context.event_type],
        order_id=event.order_id,
        attempt=context.attempt,
        error=f"{type(exc).__name__}: {exc}" + (" (gave up)" if dead else ""),
    )


@subscribe(
    OrderConfirmed, OrderShipped, OrderDelivered, OrderCancelled, OrderFailed,
    name="notifications.email_customer", queue="notifications", on_failure=_record_failure,
    atomic=False,  # it talks to the SMTP server: no transaction may be open meanwhile
)  # fmt: skip
def email_customer(event: DomainEvent, context: EventContext) -> None:
    """Send the customer the e-mail this event calls for, once."""
    notification_send(
        event_id=context.event_id,
        kind=KIND_BY_EVENT[context.event_type],
        order_id=event.order_id,
        attempt=context.attempt,
    )
