"""What the orders context does when order events arrive: run the fulfilment saga."""

from orders.events import OrderCancelled, OrderCreated
from orders.fulfilment import FULFILMENT
from outbox.events import DomainEvent
from outbox.registry import EventContext, subscribe
from sagas.services import saga_cancel, saga_start


@subscribe(OrderCreated, OrderCancelled, name="orders.fulfilment", queue="saga", batch=True)
def run_fulfilment(event: DomainEvent, context: EventContext) -> None:
    """Start the saga for a new order; undo it for a cancelled one.

    One handler for both events, so the outbox's per-aggregate ordering
    guarantees the saga exists before its cancellation arrives.

    Batched: both are database writes in the delivery's transaction (a saga's
    rows, or its cancel flag under its lock) and the first move is sent after
    commit, so a rolled-back batch sends nothing and each delivery runs again
    alone. A start racing another for the same key fails the batch on the
    unique key; run alone, it finds the saga.
    """
    if isinstance(event, OrderCreated):
        saga_start(definition=FULFILMENT, key=str(event.order_id))
    else:
        saga_cancel(definition=FULFILMENT, key=str(event.order_id))
