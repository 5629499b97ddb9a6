"""PostgreSQL binds parameters itself and prepares what a connection repeats."""

import pytest
from django.db import connection

from outbox.models import Delivery

pytestmark = pytest.mark.django_db


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_a_statement_run_repeatedly_is_prepared_once_on_the_server():
    # given
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    # when: the same query with different parameters, as often as the threshold asks
    for pk in range(threshold + 1):
        list(Delivery.objects.filter(pk=pk, handler="nobody").values_list("id"))
    # then: bound by the server ($1, not the value) and prepared once
    mine = [s for s in _prepared() if '"handler" = $' in s and "outbox_delivery" in s]
    assert len(mine) == 1
