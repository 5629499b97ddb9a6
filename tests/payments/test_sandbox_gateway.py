"""The sandbox gateway acts like a real provider: idempotent by key, refunds within the charge."""

import threading
from decimal import Decimal

import pytest

from payments.gateways import GatewayUnavailable, PaymentDeclined
from payments.gateways.sandbox import RefundExceedsCharge, SandboxGateway
from payments.models import SandboxCall, SandboxLedgerEntry
from tests.conftest import run_concurrently

pytestmark = pytest.mark.django_db
# Racing threads need their own committed view of the ledger.
racing = pytest.mark.django_db(transaction=True)

AMOUNT = Decimal("19.90")


def charge(key: str = "k1", token: str = "tok_visa", amount: Decimal = AMOUNT):
    return SandboxGateway().charge(amount=amount, currency="USD", token=token, idempotency_key=key)


def refund(charge_ref: str, key: str = "r1", amount: Decimal = AMOUNT):
    return SandboxGateway().refund(charge_ref=charge_ref, amount=amount, idempotency_key=key)


def attempts(kind: str, key: str) -> int:
    return SandboxCall.objects.get(kind=kind, idempotency_key=key).attempts


def test_the_same_key_returns_the_first_charge_and_moves_money_once():
    first = charge()
    again = charge(amount=Decimal("99.00"))
    assert again == first
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1


def test_different_keys_are_different_charges():
    assert charge("k1").reference != charge("k2").reference
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 2


@racing
def test_ten_racing_charges_with_one_key_make_one_ledger_entry():
    charges = run_concurrently(10, charge)
    assert len({c.reference for c in charges}) == 1
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1


def test_a_declined_card_is_refused_every_time_and_never_charged():
    for _ in range(2):
        with pytest.raises(PaymentDeclined):
            charge(token="tok_chargeDeclined")
    assert not SandboxLedgerEntry.objects.exists()


def test_tok_flaky_fails_its_first_two_attempts_then_charges_once():
    for attempt in (1, 2):
        with pytest.raises(GatewayUnavailable, match=f"attempt {attempt}"):
            charge(token="tok_flaky")
    first = charge(token="tok_flaky")
    assert charge(token="tok_flaky") == first
    assert attempts("charge", "k1") == 3  # the repeat found the charge without counting
    assert SandboxLedgerEntry.objects.filter(kind="charge").count() == 1


def test_tok_flaky_counts_attempts_per_key():
    with pytest.raises(GatewayUnavailable):
        charge("a", token="tok_flaky")
    with pytest.raises(GatewayUnavailable):
        charge("b", token="tok_flaky")
    assert (attempts("charge", "a"), attempts("charge", "b")) == (1, 1)


def test_tok_down_never_charges():
    for _ in range(6):
        with pytest.raises(GatewayUnavailable):
            charge(token="tok_down")
    assert attempts("charge", "k1") == 6
    assert not SandboxLedgerEntry.objects.exists()


def test_tok_refund_flaky_charges_then_fails_its_first_two_refunds():
    made = charge(token="tok_refundFlaky")
    for attempt in (1, 2):
        with pytest.raises(GatewayUnavailable, match=f"attempt {attempt}"):
            refund(made.reference)
    done = refund(made.reference)
    assert refund(made.reference) == done
    assert attempts("refund", "r1") == 3
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1


def test_the_same_refund_key_refunds_once():
    made = charge()
    assert refund(made.reference) == refund(made.reference)
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1


def test_a_refund_larger_than_the_charge_is_refused():
    made = charge()
    with pytest.raises(RefundExceedsCharge):
        refund(made.reference, amount=AMOUNT + Decimal("0.01"))
    assert not SandboxLedgerEntry.objects.filter(kind="refund").exists()


def test_partial_refunds_stop_at_the_charge():
    made = charge()
    refund(made.reference, "r1", Decimal("10.00"))
    refund(made.reference, "r2", Decimal("9.90"))
    with pytest.raises(RefundExceedsCharge):
        refund(made.reference, "r3", Decimal("0.01"))


@racing
def test_racing_refunds_under_different_keys_refund_the_charge_once():
    made = charge()
    outcomes = run_concurrently(10, lambda: _try_refund(made.reference, key=None))
    assert outcomes.count("refunded") == 1
    assert outcomes.count("exceeds") == 9
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1


@racing
def test_ten_racing_refunds_with_one_key_all_get_the_one_refund():
    made = charge()
    outcomes = run_concurrently(10, lambda: _try_refund(made.reference, key="r1"))
    assert outcomes == ["refunded"] * 10
    assert SandboxLedgerEntry.objects.filter(kind="refund").count() == 1


def _try_refund(charge_ref: str, key: str | None) -> str:
    try:
        refund(charge_ref, key or f"r-{threading.get_ident()}")
    except RefundExceedsCharge:
        return "exceeds"
    return "refunded"
