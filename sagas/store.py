"""Where the engine reads and writes a saga: one contract, one store per kind of database.

On PostgreSQL each of the engine's statements is written once in
`sql/queries.sql`, named, and run by name with no model query built for it
(the ORM's compiling cost more CPU than the statements themselves); the
steps an engine transaction changed and the saga are written in one
statement. Elsewhere (the embedded SQLite default) the ORM does the same
work in more statements.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from sagas.models import Saga, SagaStep
from shopflow.clock import db_now
from shopflow.fences import execute

# The fields the engine writes, of the saga and of a step.
SAGA_FIELDS = ("status", "current_step", "cancel_requested", "failure_reason", "last_error",
               "wake_at", "finished_at")  # fmt: skip
STEP_FIELDS = ("status", "attempts", "compensation_attempts", "fence", "result", "last_error",
               "in_doubt", "next_attempt_at", "lease_expires_at", "started_at", "finished_at",
               "compensated_at")  # fmt: skip

Locked = tuple[Saga, list[SagaStep], datetime]
# A changed instance and the names of its fields that changed.
Changes = tuple[Any, list[str]]


class Store(Protocol):
    def lock(self, saga_id: UUID) -> Locked | None:
        """Lock the saga's row and read it with the database's time, then read its steps."""

    def save(self, saga: Changes, steps: list[Changes]) -> None:
        """Write the changed steps and the saga (its `updated_at` always)."""

    def limit_lock_waits(self, seconds: float) -> None:
        """Until the transaction ends, fail a statement that waits longer for a lock."""


def locked(**lookup: Any) -> tuple[Saga | None, datetime]:
    """Lock the saga found by `lookup`; it and the database's time, in one query."""
    saga = Saga.objects.select_for_update().annotate(db_now=Now()).filter(**lookup).first()
    if saga is None:
        return None, db_now()
    return saga, saga.db_now


class OrmStore:
    """Any database Django supports: the models' queries, only the changed fields written."""

    def lock(self, saga_id: UUID) -> Locked | None:
        saga, now = locked(pk=saga_id)
        if saga is None:
            return None
        return saga, list(SagaStep.objects.filter(saga_id=saga_id).order_by("index")), now

    def save(self, saga: Changes, steps: list[Changes]) -> None:
        for step, fields in steps:
            step.save(update_fields=fields)
        instance, fields = saga
        instance.save(update_fields=[*fields, "updated_at"])

    def limit_lock_waits(self, seconds: float) -> None:
        pass  # SQLite's writers run one at a time: no one else holds a lock to wait for


class PostgresStore:
    """PostgreSQL: the named statements of `sql/queries.sql`, every engine field written."""

    def lock(self, saga_id: UUID) -> Locked | None:
        params = {"saga_id": saga_id}
        with connection.cursor() as cursor:
            lock, steps = _statements("lock_saga")
            cursor.execute(lock, params)  # with the steps' statement, where it can
            row = cursor.fetchone()
            if row is None:
                return None
            if steps:
                cursor.execute(steps, params)
            else:
                cursor.nextset()
            rows = cursor.fetchall()
        *values, now = row
        saga = Saga.from_db(connection.alias, _SAGA_COLUMNS, values)
        return saga, [self._step(row) for row in rows], now

    def _step(self, row: tuple[Any, ...]) -> SagaStep:
        values = list(row)
        values[_RESULT] = json.loads(values[_RESULT]) if isinstance(values[_RESULT], str) else {}
        return SagaStep.from_db(connection.alias, _STEP_COLUMNS, values)

    def save(self, saga: Changes, steps: list[Changes]) -> None:
        instance = saga[0]
        params: dict[str, Any] = {"id": [step.pk for step, _ in steps]}
        for name in STEP_FIELDS:
            params[name] = [getattr(step, name) for step, _ in steps]
        params["result"] = [json.dumps(result) for result in params["result"]]
        params.update(
            saga_id=instance.pk, saga_status=instance.status, current_step=instance.current_step,
            cancel_requested=instance.cancel_requested, failure_reason=instance.failure_reason,
            saga_last_error=instance.last_error, wake_at=instance.wake_at,
            saga_finished_at=instance.finished_at, updated_at=timezone.now(),
        )  # fmt: skip
        instance.updated_at = params["updated_at"]
        _run("save_saga", params)

    def limit_lock_waits(self, seconds: float) -> None:
        _run("limit_lock_waits", {"timeout": f"{max(1, round(seconds * 1000))}ms"})


def store() -> Store:
    """The store for the default connection's database."""
    return _POSTGRES if connection.vendor == "postgresql" else _ORM


_ORM, _POSTGRES = OrmStore(), PostgresStore()
_SAGA_COLUMNS = ("id", "definition", "key", "status", "current_step", "cancel_requested",
                 "failure_reason", "last_error", "wake_at", "resolution_note", "resolved_at",
                 "created_at", "updated_at", "finished_at")  # fmt: skip
_STEP_COLUMNS = ("id", "saga_id", "index", "name", "status", "attempts", "compensation_attempts",
                 "compensation_attempts_before_retry", "fence", "result", "last_error",
                 "in_doubt", "next_attempt_at", "lease_expires_at", "started_at", "finished_at",
                 "compensated_at")  # fmt: skip
_RESULT = _STEP_COLUMNS.index("result")


def _run(name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return execute(queries()[name], params)


@cache
def queries() -> dict[str, str]:
    """The statements of `sql/queries.sql` by name (`-- name --` above each)."""
    text = (Path(__file__).parent / "sql" / "queries.sql").read_text()
    parts = re.split(r"^-- (\w+) --$", text, flags=re.MULTILINE)
    return {
        name: _strip_comments(body) for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def _statements(name: str) -> tuple[str, str]:
    """A query of two statements: both in one message, or each in its own.

    Several statements with parameters go in one message with the client-side
    binding Django uses by default (psycopg's simple query protocol), each with
    a snapshot of its own; with server-side binding they are sent one by one.
    """
    if not connection.settings_dict["OPTIONS"].get("server_side_binding"):
        return queries()[name], ""
    first, second = queries()[name].split(";")
    return first, second


def _strip_comments(body: str) -> str:
    return "\n".join(line for line in body.splitlines() if not line.startswith("--")).strip()
