"""Random sequences of moves never take an order off the transition table."""

from collections import Counter
from collections.abc import Callable
from uuid import UUID

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from orders.models import (
    TRANSITIONS,
    FailureReason,
    InvalidTransition,
    Order,
    Status,
    TimelineEntry,
)
from orders.services import (
    order_cancel,
    order_confirm,
    order_fail,
    order_mark_delivered,
    order_mark_shipped,
)
from outbox.models import OutboxEvent
from tests.inventory.factories import ProductFactory
from tests.orders.factories import UserFactory, order_placed

pytestmark = pytest.mark.django_db

# Written out from CONTRACT §2 on purpose: the model below trusts TRANSITIONS,
# so TRANSITIONS itself is checked against the contract's own words.
CONTRACT_TRANSITIONS = {
    "pending": {"confirmed", "failed", "cancelled"},
    "confirmed": {"shipped", "cancelled"},
    "shipped": {"delivered"},
    "delivered": set(),
    "cancelled": set(),
    "failed": set(),
}

REASONS = st.sampled_from(["", "changed my mind", "ordered twice by mistake"])


def events_of(order_id: UUID) -> tuple[Counter[str], Counter[str]]:
    """The order's events by type, in the outbox and on its timeline."""
    outbox = OutboxEvent.objects.filter(aggregate_type="order", aggregate_id=str(order_id))
    timeline = TimelineEntry.objects.filter(order_id=order_id).exclude(
        type__startswith="inventory."
    )
    return (
        Counter(outbox.values_list("type", flat=True)),
        Counter(timeline.values_list("type", flat=True)),
    )


class OrderLife(RuleBasedStateMachine):
    """Drives one order through the services and keeps a model of what it should be."""

    def __init__(self, customer, sku: str) -> None:
        super().__init__()
        self.order_id = order_placed(customer, {sku: 1}).id
        self.status = Status.PENDING
        self.expected = Counter({"order.created": 1})

    def snapshot(self) -> tuple:
        order = Order.objects.get(pk=self.order_id)
        state = (order.status, order.cancel_reason, order.failure_reason, order.updated_at)
        return state, events_of(self.order_id)

    def attempt(self, target: str, event_type: str, move: Callable[[], object]) -> None:
        before = self.snapshot()
        if target in TRANSITIONS[self.status]:
            move()
            self.status = target
            self.expected[event_type] += 1
        elif target == Status.CANCELLED == self.status:
            move()  # cancelling twice is a quiet no-op, not an error
            assert self.snapshot() == before
        else:
            with pytest.raises(InvalidTransition):
                move()
            assert self.snapshot() == before

    @rule()
    def confirm(self) -> None:
        self.attempt(
            Status.CONFIRMED, "order.confirmed", lambda: order_confirm(order_id=self.order_id)
        )

    @rule(reason=st.sampled_from(FailureReason.values))
    def fail(self, reason: str) -> None:
        self.attempt(
            Status.FAILED, "order.failed", lambda: order_fail(order_id=self.order_id, reason=reason)
        )
        if self.status == Status.FAILED:
            assert Order.objects.get(pk=self.order_id).failure_reason in FailureReason.values

    @rule(reason=REASONS)
    def cancel(self, reason: str) -> None:
        previous = self.status
        self.attempt(
            Status.CANCELLED,
            "order.cancelled",
            lambda: order_cancel(order_id=self.order_id, reason=reason),
        )
        if previous != Status.CANCELLED and self.status == Status.CANCELLED:
            event = OutboxEvent.objects.filter(
                type="order.cancelled", aggregate_id=str(self.order_id)
            )
            assert event.get().payload["previous_status"] == previous
            assert Order.objects.get(pk=self.order_id).cancel_reason == reason

    @rule()
    def mark_shipped(self) -> None:
        self.attempt(
            Status.SHIPPED, "order.shipped", lambda: order_mark_shipped(order_id=self.order_id)
        )

    @rule()
    def mark_delivered(self) -> None:
        self.attempt(
            Status.DELIVERED,
            "order.delivered",
            lambda: order_mark_delivered(order_id=self.order_id),
        )

    @invariant()
    def stored_status_and_events_match_the_model(self) -> None:
        outbox, timeline = events_of(self.order_id)
        assert Order.objects.get(pk=self.order_id).status == self.status
        assert outbox == self.expected
        assert timeline == self.expected


def test_transition_table_is_the_contracts():
    assert {status: set(targets) for status, targets in TRANSITIONS.items()} == CONTRACT_TRANSITIONS


def test_random_moves_follow_the_table_and_raise_exactly_their_events():
    # given
    customer = UserFactory()
    sku = ProductFactory().sku
    # when / then: every step is checked against the table inside the machine
    run_state_machine_as_test(
        lambda: OrderLife(customer, sku),
        settings=hypothesis_settings(
            max_examples=25, stateful_step_count=10, deadline=None, database=None
        ),
    )


def test_failing_with_an_unknown_reason_changes_nothing():
    # given
    order = order_placed(UserFactory(), {ProductFactory().sku: 1})
    # when
    with pytest.raises(ValueError):
        order_fail(order_id=order.id, reason="bored")
    # then
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == (Status.PENDING, "")
    assert events_of(order.id)[0] == Counter({"order.created": 1})
