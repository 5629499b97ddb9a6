"""What the orders context does when order events arrive: run the fulfilment saga."""

from orders.events import OrderCancelled, OrderCreated
from orders.fulfilment import FULFILMENT
from outbox.events import DomainEvent
from outbox.registry import EventContext, subscribe
from sagas.services import saga_cancel, saga_start


@subscribe(OrderCreated, OrderCancelled, name="orders.fulfilment", queue="saga")
def run_fulfilment(event: DomainEvent, context: EventContext) -> None:
    """Start the saga for a new order; undo it for a cancelled one.

    One handler for both events, so the outbox's per-aggregate ordering
    guarantees the saga exists before its cancellation arrives.
    """
    if isinstance(event, OrderCreated):
        saga_start(definition=FULFILMENT, key=str(event.order_id))
    else:
        saga_cancel(definition=FULFILMENT, key=str(event.order_id))
