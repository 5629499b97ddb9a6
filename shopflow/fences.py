"""Writes that go through only while the attempt making them still holds its work.

A saga step's attempt hands the services it calls a `Fence` (sagas/fencing.py).
A service does not ask the fence and then write: it hands the fence its write,
one statement whose condition is marked `{held}`, and the fence runs both in
one round trip (`Fence.write`), refusing the whole write (StaleAttempt) when
the attempt is stale. Called without a fence (a compensation, an operator),
the same statement runs with its condition true.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

from django.db import connection
from django.db.models import Model

Row = tuple[Any, ...]


class Fence(Protocol):
    """One attempt's right to write; raises StaleAttempt once it is lost."""

    def __call__(self) -> None:
        """Check (and lock, until commit) inside the transaction that writes next."""

    def write(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run `sql`, condition `{held}`, only while the attempt holds; its RETURNING rows."""


HELD_ALWAYS = "1 = 1"


def fence_check(fence: Fence | None) -> None:
    """Check `fence`, if any, inside the transaction that writes next (it locks until commit)."""
    if fence is not None:
        fence()


def execute(sql: str, params: Sequence[Any]) -> list[Row]:
    """Run one statement on the default connection; its rows (none for a write without any)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def fenced_write(fence: Fence | None, sql: str, params: Sequence[Any]) -> list[Row]:
    """Run the write `sql` (its condition marked `{held}`) through `fence`, if any; its rows."""
    if fence is None:
        return execute(sql.replace("{held}", HELD_ALWAYS), params)
    return fence.write(sql, params)


def fenced_insert(fence: Fence | None, instance: Model) -> bool:
    """Insert `instance` unless a row has one of its unique values, only while `fence` holds.

    Whether it was inserted (then it has its primary key); if not, the caller
    reads the row that was there. One statement, `INSERT … SELECT … WHERE
    {held} ON CONFLICT DO NOTHING RETURNING`: no savepoint, and a racing insert
    of the same key waits on the unique index, then does nothing.
    """
    fields = _insert_fields(type(instance))
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    rows = fenced_write(fence, _insert_sql(type(instance)), values)
    if not rows:
        return False
    instance.pk = rows[0][0]
    instance._state.adding, instance._state.db = False, connection.alias
    return True


def _insert_fields(model: type[Model]) -> list[Any]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


@cache
def _insert_sql(model: type[Model]) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in _insert_fields(model))
    values = ", ".join(["%s"] * len(_insert_fields(model)))
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT {values} WHERE {{held}}"
        f" ON CONFLICT DO NOTHING RETURNING {quote(model._meta.pk.column)}"
    )
