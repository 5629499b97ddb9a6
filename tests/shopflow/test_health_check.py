"""The connection health check asks PostgreSQL only when the socket says something happened."""

from unittest import mock

import psycopg
import pytest
from django.db import connection, transaction
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the check is the PostgreSQL backend's")


def _own_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """End a backend from another connection, as a PostgreSQL restart would."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_an_idle_healthy_connection_is_usable_without_a_query():
    # given: a connection that has talked to the server
    _own_pid()
    # when
    with mock.patch.object(DjangoWrapper, "is_usable", side_effect=AssertionError("asked")):
        usable = connection.is_usable()
    # then
    assert usable is True


def test_a_connection_the_server_closed_is_unusable_and_replaced_before_the_next_query():
    # given: the server ends this connection's backend
    pid = _own_pid()
    _terminate(pid)
    assert wait_until(lambda: not connection.is_usable(), timeout=5)
    # when: a request (or a task, shopflow.celery) starts, then queries
    connection.close_if_unusable_or_obsolete()
    connection.close_if_health_check_failed()
    # then: a new backend answers, with no error on the way
    assert _own_pid() != pid


def test_inside_a_transaction_the_server_is_asked():
    with transaction.atomic():
        _own_pid()
        with mock.patch.object(DjangoWrapper, "is_usable", return_value=False) as asked:
            usable = connection.is_usable()
    assert (usable, asked.call_count) == (False, 1)
