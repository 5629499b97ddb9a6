"""`Idempotency-Key` handling around order placement (CONTRACT §2).

The unique (user, key) row is the guard, never a read-then-insert: the row is
claimed in its own committed transaction, so concurrent requests with the same
key block on the unique index and then find it. The claimant does its work and
stores the response on the row in the same transaction as the work, with a
conditional update on its `lock_id`; if that update finds nothing (the claim was
taken over as abandoned), the work rolls back. So a key yields one order at most.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.utils import json

from orders.models import IdempotencyKey

# Claim attempts before giving up with "in flight"; a retry happens only when
# the row we collided with vanished (released or expired) in between.
_CLAIM_ATTEMPTS = 3
_TABLE = IdempotencyKey._meta.db_table
_USER_COLUMN = IdempotencyKey._meta.get_field("user").column


class IdempotencyKeyReused(Exception):
    """The key was first used with a different request body."""


class IdempotencyKeyInFlight(Exception):
    """The first request with this key is still being processed."""


@dataclass(frozen=True)
class StoredResponse:
    """A response as the idempotency key keeps it: status, rendered JSON body, headers."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Claim:
    pk: int
    lock_id: uuid.UUID


def key_is_valid(key: str) -> bool:
    """1 to 255 printable ASCII characters, as the contract allows."""
    # Among ASCII characters, the printable ones are exactly " " to "~".
    return 1 <= len(key) <= 255 and key.isascii() and key.isprintable()


def request_fingerprint(data: Any) -> str:
    """A hash of the parsed request body, independent of key order and whitespace."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def idempotent_call(
    *, user: Any, key: str, fingerprint: str, call: Callable[[], StoredResponse]
) -> tuple[StoredResponse, bool]:
    """Run `call` once per (user, key); returns its response and whether it is a replay.

    Raises `IdempotencyKeyReused` (different body) or `IdempotencyKeyInFlight`.
    If `call` raises, the key is released: nothing was done, so a retry may run.
    """
    claimed = _claim(user=user, key=key, fingerprint=fingerprint)
    if isinstance(claimed, StoredResponse):
        return claimed, True
    try:
        with transaction.atomic():
            response = call()
            _complete(claimed, response)
    except BaseException:
        _release(claimed)
        raise
    return response, False


def _claim(*, user: Any, key: str, fingerprint: str) -> _Claim | StoredResponse:
    """Own the key for this request, or find the response its first request got."""
    for _ in range(_CLAIM_ATTEMPTS):
        lock_id = uuid.uuid4()
        pk = _insert_claim(user=user, key=key, fingerprint=fingerprint, lock_id=lock_id)
        if pk is not None:
            return _Claim(pk, lock_id)
        outcome = _existing(user=user, key=key, fingerprint=fingerprint, lock_id=lock_id)
        if outcome is not None:
            return outcome
    raise IdempotencyKeyInFlight()


def _insert_claim(*, user: Any, key: str, fingerprint: str, lock_id: uuid.UUID) -> int | None:
    """Insert and commit the key's row in one round trip; None if the row exists already.

    One statement in autocommit, so its own transaction: a concurrent insert of
    the same key waits on the unique index for ours to commit, then inserts
    nothing. (The ORM would need a transaction and a savepoint to turn that
    conflict into an IntegrityError: three more round trips.)

    On PostgreSQL the claim's COMMIT returns before its WAL record reaches the
    disk. Other requests see the row at commit all the same, which is all the
    claim is for. The order's own (synchronous) commit comes later in the WAL and
    flushes the claim with it; a crash before that loses both, and an unclaimed
    key is what a released one looks like. Saves one disk flush wait per placement.
    """
    now = _instant(timezone.now())
    params = [user.pk, key, fingerprint, _uuid(lock_id), now, now]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor == "postgresql"), params)
        row = cursor.fetchone()
    return row[0] if row else None


def _existing(
    *, user: Any, key: str, fingerprint: str, lock_id: uuid.UUID
) -> _Claim | StoredResponse | None:
    """What an existing key row means for this request; None when it is gone or expired."""
    row = IdempotencyKey.objects.filter(user=user, key=key).first()
    if row is None:
        return None
    now = timezone.now()
    if row.completed_at is not None and row.completed_at < now - key_ttl():
        # Past its retention the key is free again, as if it had been purged.
        IdempotencyKey.objects.filter(pk=row.pk, completed_at=row.completed_at).delete()
        return None
    if row.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    if row.completed_at is not None:
        return StoredResponse(row.response_status, row.response_body, row.response_headers)
    if _take_over(row, lock_id, now):
        return _Claim(row.pk, lock_id)
    raise IdempotencyKeyInFlight()


def _take_over(row: IdempotencyKey, lock_id: uuid.UUID, now: Any) -> bool:
    """Claim a key whose request has held it past the lock timeout (its process died)."""
    stale_before = now - timedelta(seconds=settings.IDEMPOTENCY_KEY_LOCK_SECONDS)
    return bool(
        IdempotencyKey.objects.filter(
            pk=row.pk, completed_at=None, locked_at__lt=stale_before
        ).update(lock_id=lock_id, locked_at=now)
    )


def _complete(claim: _Claim, response: StoredResponse) -> None:
    """Store the response on the key, in the caller's transaction, if we still hold it."""
    headers = connection.ops.adapt_json_value(response.headers, None)
    params = [response.status, response.body, headers, _instant(timezone.now()), claim.pk,
              _uuid(claim.lock_id)]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_complete_sql(), params)
        stored = cursor.rowcount
    if not stored:
        raise IdempotencyKeyInFlight()


# The statements are built once, and their parameters passed as the database takes
# them: quoting names and each field's get_db_prep_save cost a placement ~0.2 ms.
@cache
def _claim_sql(postgresql: bool) -> str:
    # On PostgreSQL the WHERE turns synchronous_commit off for this statement's own
    # transaction (see `_insert_claim`): one statement, whichever way parameters are bound.
    values = "%s, %s, %s, '', '{}', %s, %s, %s"
    rows = (
        f"SELECT {values} WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL"
        if postgresql
        else f"VALUES ({values})"
    )
    return (
        f"INSERT INTO {_name(_TABLE)} ({_name(_USER_COLUMN)}, {_name('key')},"
        f" {_name('request_hash')}, {_name('response_body')}, {_name('response_headers')},"
        f" {_name('lock_id')}, {_name('locked_at')}, {_name('created_at')}) {rows}"
        f" ON CONFLICT ({_name(_USER_COLUMN)}, {_name('key')}) DO NOTHING RETURNING {_name('id')}"
    )


@cache
def _complete_sql() -> str:
    return (
        f"UPDATE {_name(_TABLE)} SET {_name('response_status')} = %s,"
        f" {_name('response_body')} = %s, {_name('response_headers')} = %s,"
        f" {_name('completed_at')} = %s, {_name('lock_id')} = NULL"
        f" WHERE {_name('id')} = %s AND {_name('lock_id')} = %s AND {_name('completed_at')} IS NULL"
    )


def _name(identifier: str) -> str:
    return connection.ops.quote_name(identifier)


def _uuid(value: uuid.UUID) -> Any:
    """A UUIDField's value as this database takes it (native, or 32 hex digits)."""
    return value if connection.features.has_native_uuid_field else value.hex


def _instant(value: datetime) -> Any:
    """A DateTimeField's value as this database takes it."""
    return connection.ops.adapt_datetimefield_value(value)


def _release(claim: _Claim) -> None:
    IdempotencyKey.objects.filter(pk=claim.pk, lock_id=claim.lock_id, completed_at=None).delete()


def key_ttl() -> timedelta:
    """How long a completed key keeps replaying its response."""
    return timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def idempotency_keys_purge(*, now: Any = None) -> int:
    """Delete completed keys past their retention; returns how many went."""
    cutoff = (now or timezone.now()) - key_ttl()
    deleted, _ = IdempotencyKey.objects.filter(completed_at__lt=cutoff).delete()
    return deleted
