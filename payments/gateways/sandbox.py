"""A sandbox gateway that behaves like a real provider, deterministically, by token.

CONTRACT §3: `tok_chargeDeclined` is declined; `tok_flaky` fails the first two
charge attempts of an order transiently; `tok_down` always fails transiently;
`tok_refundFlaky` fails the first two refund attempts; other `tok_…` succeed.
Its ledger is a table of its own, so idempotency is real and auditable.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum

from payments.gateways import Charge, GatewayError, GatewayUnavailable, PaymentDeclined, Refund
from payments.models import SandboxCall, SandboxLedgerEntry


class RefundExceedsCharge(GatewayError):
    """A refund larger than what is left of the charge: refused for good."""


def _count_call(kind: str, key: str) -> int:
    """Count this call in a statement of its own, so a failure still counts; the count.

    One upsert (PostgreSQL and SQLite say it alike): concurrent calls with one
    key queue on its unique index and each gets its own number.
    """
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_CALL_SQL, [kind, key])
        return cursor.fetchone()[0]


_CALLS = SandboxCall._meta.db_table
_COUNT_CALL_SQL = f"""
INSERT INTO {_CALLS} (kind, idempotency_key, attempts) VALUES (%s, %s, 1)
ON CONFLICT (kind, idempotency_key) DO UPDATE SET attempts = {_CALLS}.attempts + 1
RETURNING attempts
"""


def _network_leg() -> None:
    """Half of PAYMENT_SANDBOX_DELAY_SECONDS: a call takes time to arrive and to answer.

    The answer's half opens the window a real provider has, where money moved
    but the caller has not heard yet; a crash there must not charge twice.
    """
    time.sleep(settings.PAYMENT_SANDBOX_DELAY_SECONDS / 2)


def _recorded(kind: str, key: str) -> SandboxLedgerEntry | None:
    return SandboxLedgerEntry.objects.filter(kind=kind, idempotency_key=key).first()


def _record(**fields: object) -> SandboxLedgerEntry:
    try:
        with transaction.atomic():
            return SandboxLedgerEntry.objects.create(**fields)
    except IntegrityError:  # a concurrent call with the same key won: return its entry
        return SandboxLedgerEntry.objects.get(
            kind=fields["kind"], idempotency_key=fields["idempotency_key"]
        )


class SandboxGateway:
    """The default gateway (settings.PAYMENT_GATEWAY)."""

    def charge(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> Charge:
        _network_leg()
        try:
            return self._charge(amount, currency, token, idempotency_key)
        finally:
            _network_leg()

    def _charge(self, amount: Decimal, currency: str, token: str, idempotency_key: str) -> Charge:
        entry = _recorded(SandboxLedgerEntry.Kind.CHARGE, idempotency_key)
        if entry is None:
            attempt = _count_call("charge", idempotency_key)
            if token == "tok_chargeDeclined":
                raise PaymentDeclined("card declined")
            if token == "tok_down" or (token == "tok_flaky" and attempt <= 2):
                raise GatewayUnavailable(f"gateway unavailable (attempt {attempt})")
            entry = _record(
                kind=SandboxLedgerEntry.Kind.CHARGE,
                reference=f"ch_{uuid.uuid4().hex[:24]}",
                idempotency_key=idempotency_key,
                token=token,
                amount=amount,
                currency=currency,
            )
        return Charge(reference=entry.reference, amount=entry.amount, currency=entry.currency)

    def find_charge(self, *, idempotency_key: str) -> Charge | None:
        _network_leg()
        try:
            entry = _recorded(SandboxLedgerEntry.Kind.CHARGE, idempotency_key)
        finally:
            _network_leg()
        if entry is None:
            return None
        return Charge(reference=entry.reference, amount=entry.amount, currency=entry.currency)

    def refund(self, *, charge_ref: str, amount: Decimal, idempotency_key: str) -> Refund:
        _network_leg()
        try:
            return self._refund(charge_ref, amount, idempotency_key)
        finally:
            _network_leg()

    def _refund(self, charge_ref: str, amount: Decimal, idempotency_key: str) -> Refund:
        entry = _recorded(SandboxLedgerEntry.Kind.REFUND, idempotency_key)
        if entry is None:
            charge = SandboxLedgerEntry.objects.get(
                kind=SandboxLedgerEntry.Kind.CHARGE, reference=charge_ref
            )
            attempt = _count_call("refund", idempotency_key)
            if charge.token == "tok_refundFlaky" and attempt <= 2:
                raise GatewayUnavailable(f"refund unavailable (attempt {attempt})")
            entry = self._refund_within_charge(charge, amount, idempotency_key)
        return Refund(reference=entry.reference, charge_reference=charge_ref, amount=entry.amount)

    def _refund_within_charge(
        self, charge: SandboxLedgerEntry, amount: Decimal, idempotency_key: str
    ) -> SandboxLedgerEntry:
        with transaction.atomic():
            SandboxLedgerEntry.objects.select_for_update().get(pk=charge.pk)  # serialise refunds
            # A racing call with the same key may have refunded while this one waited:
            # that refund is this call's answer, not a second refund to refuse.
            entry = _recorded(SandboxLedgerEntry.Kind.REFUND, idempotency_key)
            if entry is not None:
                return entry
            refunded = SandboxLedgerEntry.objects.filter(
                kind=SandboxLedgerEntry.Kind.REFUND, charge_reference=charge.reference
            ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
            if refunded + amount > charge.amount:
                raise RefundExceedsCharge(
                    f"refund of {amount} exceeds what is left of {charge.reference}"
                )
            return _record(
                kind=SandboxLedgerEntry.Kind.REFUND,
                reference=f"re_{uuid.uuid4().hex[:24]}",
                idempotency_key=idempotency_key,
                charge_reference=charge.reference,
                amount=amount,
                currency=charge.currency,
            )
