"""The projection's write is one statement, whether the day's row exists or not."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from analytics.models import DailySales
from analytics.services import daily_sales_add

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.date(2026, 3, 1)


def statements_of(add) -> list[str]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        add()
    return [q["sql"] for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


def test_the_first_event_of_a_day_and_the_next_ones_are_one_statement_each():
    # when
    first = statements_of(lambda: daily_sales_add(day=DAY, field="orders_placed"))
    then = statements_of(
        lambda: daily_sales_add(day=DAY, field="gross_revenue", amount=Decimal("19.90"))
    )
    # then
    assert (len(first), len(then)) == (1, 1), first + then
    day = DailySales.objects.get()
    assert (day.orders_placed, day.gross_revenue) == (1, Decimal("19.90"))


def test_several_events_in_one_transaction_add_up_without_a_savepoint():
    # when: a batch of events handled in one transaction, across two days
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for day, field, amount in [
            (DAY, "orders_placed", 1), (DAY, "orders_placed", 1),
            (DAY + datetime.timedelta(days=1), "refunds", Decimal("4.50")),
            (DAY, "gross_revenue", Decimal("19.90")), (DAY, "gross_revenue", Decimal("0.10")),
        ]:  # fmt: skip
            daily_sales_add(day=day, field=field, amount=amount)
    # then
    assert not any(q["sql"].startswith("SAVEPOINT") for q in queries.captured_queries)
    assert list(
        DailySales.objects.values_list("date", "orders_placed", "gross_revenue", "refunds")
    ) == [
        (DAY, 2, Decimal("20.00"), Decimal("0.00")),
        (DAY + datetime.timedelta(days=1), 0, Decimal("0.00"), Decimal("4.50")),
    ]


def test_an_unknown_figure_is_refused():
    with pytest.raises(ValueError, match="unknown daily sales figure"):
        daily_sales_add(day=DAY, field="orders_placed; DROP TABLE x", amount=1)
