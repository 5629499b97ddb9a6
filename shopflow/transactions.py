"""The two rules a provider call keeps about transactions, each written once.

A call to a payment gateway or a carrier runs with no transaction open (no
lock or connection is held while the network answers), and what it returns is
recorded inside the transaction that records its event, so that the record
and the event commit together.
"""

from __future__ import annotations

from django.db import connection


def outside_transaction(action: str, provider: str) -> None:
    """Refuse to call `provider` from inside a transaction."""
    if connection.in_atomic_block:
        raise RuntimeError(f"{action} calls {provider} and must not run in a transaction")


def inside_transaction(record: str) -> None:
    """Refuse to record a provider's answer outside the transaction that records its event."""
    if not connection.in_atomic_block:
        raise RuntimeError(f"{record} is recorded inside the transaction that records its event")
