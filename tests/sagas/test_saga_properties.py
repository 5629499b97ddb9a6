"""A stateful property test of the fulfilment saga: whatever happens, stock and money add up.

Orders are placed, cancelled, shipped and restocked in any order while the
saga runs in process a little at a time; messages are delivered twice and
steps crash half-way (claimed and dropped, or performed and never recorded).
After every rule, stock is conserved and nothing is charged twice; once the
machinery is quiet, every order is settled and its money agrees with its status.
"""

from __future__ import annotations

import itertools
from collections import Counter
from contextlib import suppress
from decimal import Decimal
from uuid import UUID

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from inventory.models import Product, Reservation, ReservationLine
from inventory.services import product_restock
from orders.fulfilment import FULFILMENT
from orders.models import InvalidTransition, Order
from orders.services import LineRequest, order_cancel, order_place
from payments.models import Payment, SandboxLedgerEntry
from sagas import engine, tasks
from sagas.models import Saga
from shipping.models import Shipment
from shipping.services import shipment_advance
from tests.sagas.scenarios import InProcessSaga, address

pytestmark = pytest.mark.django_db(transaction=True)

TOKENS = ("tok_visa", "tok_chargeDeclined", "tok_flaky", "tok_down", "tok_refundFlaky")
INITIAL_STOCK = 6
RUNS = itertools.count()


class Fulfilment(RuleBasedStateMachine):
    """Each example works on products and orders of its own; the database is not reset between."""

    saga: InProcessSaga  # set by the test

    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        run = next(RUNS)
        self.skus = (f"P{run}-A", f"P{run}-B")
        for sku in self.skus:
            Product.objects.create(sku=sku, name=sku, price=Decimal("4.50"), on_hand=INITIAL_STOCK)
        self.restocked: Counter[str] = Counter()
        self.placed: dict[UUID, tuple[str, str]] = {}
        self.customer = get_user_model().objects.get_or_create(username="prop")[0]

    # --- what customers, the carrier and operators do -------------------------------------

    placing = {
        "token": st.sampled_from(TOKENS),
        "country": st.sampled_from(("US", "AQ")),
        "quantities": st.lists(st.integers(1, 5), min_size=1, max_size=2),
        "moves": st.integers(0, 2),
    }

    # Two orders from the start, so no example is spent on an idle machine.
    @initialize(target=orders, **placing)
    def first_order(self, token: str, country: str, quantities: list[int], moves: int) -> UUID:
        return self.place(token, country, quantities, moves)

    @initialize(target=orders, **placing)
    def second_order(self, token: str, country: str, quantities: list[int], moves: int) -> UUID:
        return self.place(token, country, quantities, moves)

    @rule(target=orders, **placing)
    def place(self, token: str, country: str, quantities: list[int], moves: int) -> UUID:
        """Place an order, then let the machinery make a few moves (it may be busy elsewhere)."""
        lines = [LineRequest(sku, q) for sku, q in zip(self.skus, quantities, strict=False)]
        order = order_place(
            customer=self.customer, lines=lines, payment_token=token,
            shipping_address=address(country),
        )  # fmt: skip
        self.placed[order.id] = (token, country)
        self.work_a_little(moves)
        return order.id

    @rule(order_id=orders)
    def cancel(self, order_id: UUID) -> None:
        with suppress(InvalidTransition):  # shipped or failed: the customer is told no
            order_cancel(order_id=order_id, reason="changed my mind")

    @rule(order_id=orders)
    def carrier_picks_up(self, order_id: UUID) -> None:
        shipment = Shipment.objects.filter(order_id=order_id, status="scheduled").first()
        if shipment is None:
            return
        with suppress(
            InvalidTransition
        ):  # the order was cancelled meanwhile: the carrier is told no
            shipment_advance(tracking_number=shipment.tracking_number, status="shipped")

    @rule(index=st.integers(0, 1), quantity=st.integers(1, 4))
    def restock(self, index: int, quantity: int) -> None:
        product_restock(sku=self.skus[index], quantity=quantity)
        self.restocked[self.skus[index]] += quantity

    # --- how the machinery runs, and fails ------------------------------------------------

    @rule(moves=st.integers(1, 3))
    def work_a_little(self, moves: int) -> None:
        """Handle the next few saga messages (deliveries first)."""
        for _ in range(moves):
            self.saga.step()

    @rule()
    def deliver_twice(self) -> None:
        self.saga.deliver(times=2)

    @rule()
    def advance_twice(self) -> None:
        self.saga.advance(times=2)

    @rule(performed=st.booleans(), cancelled_meanwhile=st.booleans())
    def crash_next_move(self, performed: bool, cancelled_meanwhile: bool) -> None:
        """The worker taking the next saga message claims its move and dies, before or after
        acting: nobody records the outcome, the step's lease has to run out. With
        `cancelled_meanwhile`, the customer cancels the order before anyone notices.
        """
        self.saga.deliver()
        if not self.saga.advances:
            tasks.saga_watchdog()  # sagas waiting out a lease have no message queued
        if not self.saga.advances:
            return
        saga = Saga.objects.get(pk=self.saga.advances.popleft())
        move = engine._claim(saga.pk)
        if move is not None and performed:
            engine._perform(move)
        if cancelled_meanwhile:
            self.cancel(UUID(saga.key))

    # --- what must always hold -----------------------------------------------------------

    @invariant()
    def stock_is_conserved(self) -> None:
        for sku in self.skus:
            product = Product.objects.get(sku=sku)
            lines = ReservationLine.objects.filter(product=product)
            committed = _total(lines.filter(reservation__status="committed"))
            held = _total(lines.filter(reservation__status="active"))
            assert product.on_hand == INITIAL_STOCK + self.restocked[sku] - committed
            assert product.reserved == held

    @invariant()
    def nothing_is_charged_twice_or_refunded_beyond_its_charge(self) -> None:
        charges, net = self.money()
        for order in Order.objects.filter(pk__in=self.placed):
            assert charges[order.id] <= 1, f"{order} charged {charges[order.id]} times"
            assert 0 <= net[order.id] <= order.total

    def money(self) -> tuple[Counter[UUID], dict[UUID, Decimal]]:
        """Each order's charges in the gateway's ledger, and what it paid net of refunds.

        In three queries: the ledger is read by the saga's key prefix, so a charge
        made under any other key of the same saga (one per attempt, say) counts too.
        """
        sagas = Saga.objects.filter(definition=FULFILMENT, key__in=[str(o) for o in self.placed])
        order_of = {f"saga:{pk}:": UUID(key) for pk, key in sagas.values_list("pk", "key")}
        charges: Counter[UUID] = Counter()
        net: dict[UUID, Decimal] = dict.fromkeys(self.placed, Decimal("0"))
        order_of_charge = {}
        for entry in SandboxLedgerEntry.objects.filter(
            kind="charge", idempotency_key__startswith="saga:"
        ):
            order_id = order_of.get(
                entry.idempotency_key[: entry.idempotency_key.index(":", 5) + 1]
            )
            if order_id is not None:
                charges[order_id] += 1
                net[order_id] += entry.amount
                order_of_charge[entry.reference] = order_id
        refunds = SandboxLedgerEntry.objects.filter(
            kind="refund", charge_reference__in=order_of_charge
        )
        for charge_reference, amount in refunds.values_list("charge_reference", "amount"):
            net[order_of_charge[charge_reference]] -= amount
        return charges, net

    def teardown(self) -> None:
        self.saga.run_until_quiet()
        self.assert_settled()

    def assert_settled(self) -> None:
        _, net = self.money()
        for order in Order.objects.filter(pk__in=self.placed):
            token, country = self.placed[order.id]
            payment = Payment.objects.filter(order_id=order.id).first()
            shipment = Shipment.objects.filter(order_id=order.id).first()
            reservation = Reservation.objects.filter(order_id=order.id).first()
            assert order.status != "pending", f"{order} never settled"
            if order.status in ("confirmed", "shipped"):
                shipped = order.status == "shipped"
                assert payment.status == "captured" and net[order.id] == order.total
                assert shipment.status == ("shipped" if shipped else "scheduled")
                assert reservation.status == ("committed" if shipped else "active")
            else:
                assert net[order.id] == 0, order
                assert payment is None or payment.status != "captured"
                assert shipment is None or shipment.status == "cancelled"
                assert reservation is None or reservation.status == "released"
            assert _reason_fits(order, token, country, payment), (order, order.failure_reason)


def _total(lines) -> int:
    return lines.aggregate(total=Sum("quantity"))["total"] or 0


def _reason_fits(order: Order, token: str, country: str, payment: Payment | None) -> bool:
    """A failed order's reason is the one its token, address or the stock explain."""
    return {
        "": order.status != "failed",
        "insufficient_stock": payment is None,
        "payment_declined": token == "tok_chargeDeclined",
        "payment_unavailable": token == "tok_down",
        "shipping_unavailable": country == "AQ",
    }[order.failure_reason]


def test_stock_and_money_add_up_whatever_happens(in_process):
    Fulfilment.saga = in_process
    run_state_machine_as_test(
        Fulfilment,
        settings=settings(
            max_examples=15,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # No shrinking: every replay does real database work, and a failing run of at
            # most ten steps reads well as it is. No example database: each run starts fresh.
            phases=[Phase.explicit, Phase.generate],
            database=None,
        ),
    )
