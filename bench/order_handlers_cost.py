"""In-process cost of the handlers a confirmed order runs besides the saga (issue 12).

Run with pytest, on your own database (it makes `test_<db>`), A/B against
another tree by running the same file from each tree in turn:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/shopflow_<you> \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/<n> BENCH_CALLS=200 \\
    .venv/bin/pytest bench/order_handlers_cost.py -q -s -p no:cacheprovider

Each line printed is JSON: per call, the SQL statements of one warm call (BEGIN
and COMMIT not counted; `transactions` counts the BEGINs), the CPU of this
process (`time.process_time()`) and of its PostgreSQL backend (from /proc,
10 ms ticks: use a few hundred calls). Templates render without the test
runner's instrumentation, as in a worker; e-mails go to the locmem backend.

`test_a_message_of_deliveries_one_by_one_against_one_batch` compares, per
delivery, a message of 20 deliveries to `analytics.daily_sales` or
`orders.fulfilment` handled one by one (`batch=False`) and as one batch,
alternated over BENCH_ROUNDS rounds of BENCH_CALLS deliveries. The saga's
first moves are published to the broker db: flush it afterwards.
"""

import datetime
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from analytics.handlers import project_daily_sales
from notifications.handlers import email_customer
from notifications.models import Notification
from orders.events import OrderConfirmed, OrderCreated
from outbox import registry
from outbox.delivery import deliveries_process, delivery_process
from outbox.events import DomainEvent
from outbox.models import Delivery
from outbox.registry import EventContext, get_handler
from outbox.relay import deliveries_claim
from outbox.services import events_record
from payments.events import PaymentCaptured
from tests.notifications.factories import OrderFactory, PaymentFactory, event_recorded, order_made
from tests.orders.factories import UserFactory

CALLS = int(os.environ.get("BENCH_CALLS", "200"))
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def uninstrumented_templates() -> Iterator[None]:
    """Templates render as in a worker, without the test runner's template_rendered signal."""
    from django.template import Template
    from django.test.utils import _TestState

    instrumented, Template._render = Template._render, _TestState.saved_data.template_render
    yield
    Template._render = instrumented


def backend_cpu_seconds() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context(event_type: str, occurred_at=None, event_id=None, attempt=1) -> EventContext:  # type: ignore[no-untyped-def]
    return EventContext(
        event_id=str(event_id or uuid.uuid4()), event_type=event_type, aggregate_type="order",
        aggregate_id=str(uuid.uuid4()), occurred_at=occurred_at, headers={}, attempt=attempt,
    )  # fmt: skip


def measure(label: str, calls: list[Callable[[], object]], in_transaction: bool) -> None:
    """Statements of the second call, then CPU per call over the rest."""

    def run(call: Callable[[], object]) -> None:
        if in_transaction:
            with transaction.atomic():
                call()
        else:
            call()

    run(calls[0])
    with CaptureQueriesContext(connection) as queries:
        run(calls[1])
    sent = [q["sql"] for q in queries.captured_queries]
    statements = [sql for sql in sent if sql not in ("BEGIN", "COMMIT")]
    backend, started = backend_cpu_seconds(), time.process_time()
    for call in calls[2:]:
        run(call)
    per_call = 1000 / (len(calls) - 2)
    line = {
        "handler_cost": label, "statements": len(statements),
        "transactions": sent.count("BEGIN"),
        "savepoints": sum(sql.startswith("SAVEPOINT") for sql in sent),
        "py_cpu_ms": round((time.process_time() - started) * per_call, 3),
        "pg_cpu_ms": round((backend_cpu_seconds() - backend) * per_call, 3),
    }  # fmt: skip
    print(json.dumps(line))


def test_daily_sales_projection() -> None:
    now = datetime.datetime.now(datetime.UTC)
    order_id = uuid.uuid4()
    events = [
        (OrderCreated(order_id=order_id, number="SF-1", customer_id=1, total=Decimal("1.00"),
                      currency="USD", lines=()), "order.created"),
        (OrderConfirmed(order_id=order_id), "order.confirmed"),
        (PaymentCaptured(order_id=order_id, amount=Decimal("19.90"), currency="USD",
                         provider_ref="ch"), "payment.captured"),
    ]  # fmt: skip

    def call(index: int, day_back: int | None) -> Callable[[], None]:
        event, event_type = events[index % 3] if day_back is None else events[1]
        when = now if day_back is None else now - datetime.timedelta(days=day_back)
        return lambda: project_daily_sales(event, context(event_type, occurred_at=when))

    measure("daily_sales, the day's row exists", [call(i, None) for i in range(CALLS + 2)], True)
    measure("daily_sales, a day's first event", [call(i, 10 + i) for i in range(CALLS + 2)], True)


def test_confirmed_order_email() -> None:
    orders = [order_made(status="confirmed", customer__email="ada@example.com")
              for _ in range(CALLS + 2)]  # fmt: skip
    for order in orders:
        PaymentFactory(order_id=order.id, amount=order.total)
    first = [(lambda o=o: email_customer(OrderConfirmed(order_id=o.id), context("order.confirmed")))
             for o in orders]  # fmt: skip
    measure("email_customer, order.confirmed", first, False)
    assert len(mail.outbox) == CALLS + 2
    event_of = dict(Notification.objects.values_list("order_id", "event_id"))
    again = [
        (lambda o=o: email_customer(OrderConfirmed(order_id=o.id),
                                    context("order.confirmed", event_id=event_of[o.id], attempt=2)))
        for o in orders
    ]  # fmt: skip
    measure("email_customer, order.confirmed again (already sent)", again, False)
    assert len(mail.outbox) == CALLS + 2


BATCH = 20  # deliveries per message in the batch comparison
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def events_made(handler: str, count: int) -> list[DomainEvent]:
    """`count` events for `handler`, each about an order of its own (one aggregate each)."""
    customer = UserFactory()
    orders = OrderFactory.create_batch(count, customer=customer)
    if handler == "orders.fulfilment":
        return [
            OrderCreated(order_id=o.id, number=o.number, customer_id=customer.id,
                         total=Decimal("1.00"), currency="USD", lines=())
            for o in orders
        ]  # fmt: skip
    return [
        PaymentCaptured(order_id=o.id, amount=Decimal("19.90"), currency="USD", provider_ref="ch")
        for o in orders
    ]


def messages_leased(handler: str, messages: int) -> list[tuple[str, list[int]]]:
    """`messages` messages of BATCH leased deliveries to `handler`, as a drain would send them."""
    for start in range(0, messages * BATCH, 100):
        with transaction.atomic():
            events_record(events_made(handler, min(100, messages * BATCH - start)))
    lease_id, rows = deliveries_claim(100 * messages * BATCH)
    ids = [pk for pk, name in rows if name == handler]
    return [(lease_id, ids[i : i + BATCH]) for i in range(0, len(ids), BATCH)]


def batch_set(monkeypatch: pytest.MonkeyPatch, handler: str, on: bool) -> None:
    """Subscribe `handler` with `batch=on` (the registry's entry, restored after the test)."""
    monkeypatch.setitem(registry._HANDLERS, handler, replace(get_handler(handler), batch=on))


@pytest.mark.parametrize("handler", ["analytics.daily_sales", "orders.fulfilment"])
def test_a_message_of_deliveries_one_by_one_against_one_batch(
    settings, monkeypatch: pytest.MonkeyPatch, handler: str
) -> None:  # type: ignore[no-untyped-def]
    """`deliveries_process` of messages of BATCH deliveries, `batch` off and on, alternated.

    Per delivery, over ROUNDS rounds of BENCH_CALLS deliveries per mode (the
    first message of each mode not counted): this process's CPU (the worker's
    task body, the saga's first-move publish included) and its PostgreSQL
    backend's; statements and transactions (BEGINs) of one message.
    """
    settings.OUTBOX_WAKE_ON_COMMIT = settings.OUTBOX_DISPATCH_ON_COMMIT = False
    per_round = max(1, CALLS // BATCH)
    modes = {"one_by_one": False, "batch": True}
    messages = messages_leased(handler, 2 * (ROUNDS * per_round + 2))
    queued = {"one_by_one": messages[0::2], "batch": messages[1::2]}
    cost = {mode: {"py": 0.0, "pg": 0.0, "n": 0, "rounds": []} for mode in modes}
    shape = {}
    for mode, on in modes.items():  # warm up, and count one message's statements
        batch_set(monkeypatch, handler, on)
        deliveries_process(*queued[mode].pop())
        with CaptureQueriesContext(connection) as queries:
            outcomes = deliveries_process(*queued[mode].pop())
        assert [o.status for o in outcomes] == ["done"] * BATCH
        sent = [q["sql"] for q in queries.captured_queries]
        shape[mode] = (len([q for q in sent if q not in ("BEGIN", "COMMIT")]), sent.count("BEGIN"))
    for round_ in range(ROUNDS):
        for mode in modes if round_ % 2 == 0 else reversed(modes):
            batch_set(monkeypatch, handler, modes[mode])
            backend, started = backend_cpu_seconds(), time.process_time()
            for _ in range(per_round):
                deliveries_process(*queued[mode].pop())
            py, pg = time.process_time() - started, backend_cpu_seconds() - backend
            done = per_round * BATCH
            cost[mode]["py"] += py
            cost[mode]["pg"] += pg
            cost[mode]["n"] += done
            cost[mode]["rounds"].append(round((py + pg) * 1000 / done, 3))
    assert not Delivery.objects.filter(handler=handler).exclude(status="done").exists()
    for mode, figures in cost.items():
        per = 1000 / figures["n"]
        statements, transactions = shape[mode]
        line = {
            "batch_cost": handler, "mode": mode, "deliveries_per_message": BATCH,
            "deliveries": figures["n"], "statements_per_message": statements,
            "transactions_per_message": transactions,
            "py_cpu_ms_per_delivery": round(figures["py"] * per, 3),
            "pg_cpu_ms_per_delivery": round(figures["pg"] * per, 3),
            "cpu_ms_per_delivery_by_round": figures["rounds"],
        }  # fmt: skip
        print(json.dumps(line))


def test_whole_deliveries_of_a_confirmed_order(settings) -> None:  # type: ignore[no-untyped-def]
    """`delivery_process` per handler: the outbox's start and flip around the handler."""
    settings.OUTBOX_WAKE_ON_COMMIT = settings.OUTBOX_DISPATCH_ON_COMMIT = False
    for _ in range(CALLS + 2):
        order = order_made(status="confirmed", customer__email="ada@example.com")
        PaymentFactory(order_id=order.id, amount=order.total)
        event_recorded(OrderConfirmed(order_id=order.id))
    lease_id, rows = deliveries_claim(10 * CALLS)
    claimed = Delivery.objects.filter(id__in=[pk for pk, _ in rows], lease_id=lease_id)
    deliveries = list(claimed.select_related("event").order_by("id"))
    for handler in ("analytics.daily_sales", "notifications.email_customer"):
        calls = [(lambda d=d: delivery_process(d)) for d in deliveries if d.handler == handler]
        measure(f"delivery_process, {handler}", calls, False)
